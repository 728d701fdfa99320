//! The test receiver answers as scripted and records what it was sent; the pipeline tests
//! rely on both.

use std::time::{Duration, Instant};

use herald_tests::receiver::{Script, TestReceiver};

fn client() -> reqwest::Client {
    // A fresh connection per request, so a stopped receiver is seen as one.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn post(receiver: &TestReceiver, body: &'static str) -> u16 {
    client()
        .post(receiver.url())
        .header("webhook-id", "msg_1")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn answers_follow_the_script_then_the_last_answer_repeats() {
    let receiver = TestReceiver::start(Script::sequence([500, 503, 200])).await;
    let mut statuses = Vec::new();
    for body in ["a", "b", "c", "d"] {
        statuses.push(post(&receiver, body).await);
    }
    assert_eq!(statuses, [500, 503, 200, 200]);

    let got = receiver.requests();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/webhooks");
    assert_eq!(got[0].header("Webhook-Id"), "msg_1");
    assert_eq!(got[0].header("absent"), "");
    assert_eq!(got[1].body, b"b");
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 503, 200, 200]
    );
    assert!(got.windows(2).all(|pair| pair[0].at <= pair[1].at));
}

#[tokio::test]
async fn a_delayed_answer_is_recorded_on_arrival_and_sent_after_its_delay() {
    // Long enough that a busy machine still records the request well before it.
    let delay = Duration::from_secs(2);
    let receiver = TestReceiver::start(Script::steps([(200, delay), (204, Duration::ZERO)])).await;
    let started = Instant::now();
    let slow = tokio::spawn({
        let url = receiver.url();
        async move { client().post(url).send().await.unwrap().status().as_u16() }
    });
    let arrived = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(arrived.len(), 1);
    assert!(started.elapsed() < delay, "recorded only after the delay");
    assert_eq!(slow.await.unwrap(), 200);
    assert!(started.elapsed() >= delay);

    let started = Instant::now();
    assert_eq!(post(&receiver, "").await, 204);
    assert!(started.elapsed() < delay, "the undelayed step waited");
}

#[tokio::test]
async fn with_delay_slows_every_answer() {
    let delay = Duration::from_millis(200);
    let receiver = TestReceiver::start(Script::always(200).with_delay(delay)).await;
    for _ in 0..2 {
        let started = Instant::now();
        assert_eq!(post(&receiver, "").await, 200);
        assert!(started.elapsed() >= delay);
    }
}

#[tokio::test]
async fn wait_for_gives_what_arrived_when_time_is_up() {
    let receiver = TestReceiver::start(Script::always(200)).await;
    post(&receiver, "only one").await;
    let started = Instant::now();
    let got = receiver.wait_for(2, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_override_answers_everything_until_lifted() {
    let receiver = TestReceiver::start(Script::always(200)).await;
    receiver.answer_all_with(Some(410));
    assert_eq!(post(&receiver, "").await, 410);
    receiver.answer_all_with(None);
    assert_eq!(post(&receiver, "").await, 200);
    assert_eq!(
        receiver
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [410, 200]
    );
}

#[tokio::test]
async fn a_dropped_receiver_refuses_connections() {
    let receiver = TestReceiver::start(Script::always(200)).await;
    let url = receiver.url();
    assert_eq!(post(&receiver, "").await, 200);
    drop(receiver);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client().post(&url).send().await {
            Err(e) if e.is_connect() => break,
            _ if Instant::now() > deadline => panic!("{url} still answers after the drop"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn chaos_fails_with_each_kind_in_turn() {
    use herald_tests::receiver::Chaos;
    let hang = Duration::from_millis(300);
    let receiver = TestReceiver::start(Script::always(200).with_chaos(Chaos {
        seed: 7,
        percent: 100,
        hang,
    }))
    .await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = client().post(receiver.url()).body("x").send().await;
        outcomes.push(match outcome {
            Ok(response) => (response.status().as_u16(), started.elapsed() >= hang),
            Err(_) => (0, false),
        });
    }
    outcomes.sort();
    // 0: the connection closed without an answer; 504 after the hang; 500 at once.
    assert_eq!(outcomes, [(0, false), (500, false), (504, true)]);
    let mut recorded: Vec<u16> = receiver.requests().iter().map(|r| r.status).collect();
    recorded.sort();
    assert_eq!(recorded, [0, 500, 504]);

    let calm = TestReceiver::start(Script::always(200).with_chaos(Chaos {
        seed: 7,
        percent: 0,
        hang,
    }))
    .await;
    for _ in 0..5 {
        assert_eq!(post(&calm, "").await, 200);
    }
}
