#!/usr/bin/env python3
"""Cold start without the emulator: the time from starting a bootstrap to its first
`GET .../runtime/invocation/next`, against a stub runtime API on loopback that only
records that request. The first bootstrap named is the yardstick for the ratios.

    python3 bench/exec_to_next.py 40 target/lambda-x86_64/hello/bootstrap \
        target/lambda-x86_64/{ingest,manage,deliver}/bootstrap

Herald's configuration is given placeholder values: nothing is called before `next`.
"""
import socket, subprocess, time, os, sys, statistics
env = dict(os.environ)
env.update(HERALD_SUBSCRIPTIONS_TABLE='s', HERALD_DELIVERIES_TABLE='d', HERALD_EVENTS_TABLE='e',
  HERALD_DELIVERY_QUEUE_URL='http://x/q', HERALD_DEAD_LETTER_QUEUE_URL='http://x/dlq',
  HERALD_ORDERED_QUEUE_URL='http://x/o.fifo', HERALD_ORDERED_DEAD_LETTER_QUEUE_URL='http://x/odlq.fifo', HERALD_PORTAL_SESSIONS_TABLE='p',
  AWS_REGION='us-east-1', AWS_ACCESS_KEY_ID='x', AWS_SECRET_ACCESS_KEY='y',
  AWS_LAMBDA_FUNCTION_NAME='f', AWS_LAMBDA_FUNCTION_MEMORY_SIZE='512', AWS_LAMBDA_FUNCTION_VERSION='1',
  HERALD_API_STAGE='v1', HERALD_TENANT_CLAIM='tenant', HERALD_JWT_ISSUER='x', HERALD_JWT_AUDIENCE='y')
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(('127.0.0.1', 0)); srv.listen(16)
port = srv.getsockname()[1]
env['AWS_LAMBDA_RUNTIME_API'] = f'127.0.0.1:{port}'
res = {}
if len(sys.argv) < 3:
    sys.exit(__doc__)
bins = sys.argv[2:]
for b in bins: res[b] = []
for i in range(int(sys.argv[1])):
    for b in bins:
        t0 = time.perf_counter()
        p = subprocess.Popen([b], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c, _ = srv.accept()
        data = c.recv(4096)
        t1 = time.perf_counter()
        assert b'next' in data, data
        p.kill(); p.wait(); c.close()
        res[b].append((t1 - t0) * 1e3)
h = statistics.median(res[bins[0]])
for b in bins:
    m = statistics.median(res[b]); print(f'{b:60s} median {m:.2f} ms  min {min(res[b]):.2f}  ratio {m/h:.2f}')
