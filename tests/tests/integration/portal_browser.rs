//! The consumer portal in a real browser: Debian's chromium, headless, driven through
//! chromedriver (WebDriver) against a whole local Herald. A tenant opens the page from a
//! session's URL, adds an endpoint, sends it a test event and sees the attempt, rotates its
//! secret, and cannot reach another tenant's endpoint; the page's controls are labelled and
//! it fits a phone. With more endpoints and deliveries than a page of the API, every
//! endpoint is listed and the attempt log shows older deliveries on asking. The views are
//! saved as screenshots in `target/portal-screenshots/`, and in `docs/portal/` with
//! `HERALD_UPDATE_SCREENSHOTS=1`.
//!
//! `scripts/chromium.sh` installs chromium and chromium-driver (`make test` runs it); without
//! them this test fails, it is not skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use herald_testkit::signatures::{signature_entries, v1_signature};
use herald_testkit::wait::PATIENCE;
use herald_tests::emulator::{spawn_listening, workspace_root};
use herald_tests::free_port;
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};

/// The window the desktop screenshots are taken in, and the phone the page must fit.
const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);
/// The tallest full-page screenshot.
const MAX_SHOT_HEIGHT: u32 = 2000;

/// The session token's key in the page's sessionStorage (portal.js).
const TOKEN_KEY: &str = "herald-portal-token";

/// `name` on PATH, or a failure that says how to install it.
fn installed(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/chromium.sh (it installs Debian's chromium \
                 and chromium-driver; `make test` runs it)"
            )
        })
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A headless chromium behind its own chromedriver, both ended when dropped.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    driver_port: u16,
    driver_output: Arc<Mutex<Vec<u8>>>,
    session: String,
    profile: PathBuf,
}

impl Drop for Browser {
    /// Also when the test fails: the session is ended first, so that chromedriver closes
    /// chromium (killing chromedriver alone would leave chromium running), then chromedriver
    /// is killed and the profile removed.
    fn drop(&mut self) {
        end_session(self.driver_port, &self.session);
        let _ = self.driver.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// WebDriver's Delete Session, sent by hand: a drop cannot wait for the async client.
fn end_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return;
    }
    // The answer, read to its end: chromedriver keeps the connection open after it.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        answer.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|l| l.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return;
            }
        }
    }
}

impl Browser {
    async fn start() -> Self {
        let chromium = installed("chromium");
        let chromedriver = installed("chromedriver");
        let port = free_port();
        let mut command = tokio::process::Command::new(chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let (driver, driver_output) =
            spawn_listening(&mut command, "chromedriver", port, Duration::from_secs(30)).await;
        let profile = std::env::temp_dir().join(format!(
            "herald-portal-chromium-{:016x}",
            rand::random::<u64>()
        ));
        let Value::Object(capabilities) = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }) else {
            unreachable!("an object")
        };
        let client = ClientBuilder::rustls()
            .expect("rustls for the WebDriver client")
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        let client = match client {
            Ok(client) => client,
            Err(e) => panic!(
                "chromedriver started no chromium ({e}); run scripts/chromium.sh. chromedriver said: {}",
                String::from_utf8_lossy(&driver_output.lock().unwrap())
            ),
        };
        let session = client
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("a WebDriver session");
        Self {
            client,
            driver,
            driver_port: port,
            driver_output,
            session,
            profile,
        }
    }

    /// Ends the browser's session (chromedriver closes chromium), then chromedriver.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("running a script in the page: {e}"))
    }

    /// What the page shows, for failures.
    async fn shown(&self) -> String {
        let text = self
            .client
            .execute("return document.body.innerText", vec![])
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(the page could not be read: {e})"));
        format!(
            "the page at {} shows:\n{text}",
            self.client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default()
        )
    }

    /// Polls `script` (a function body) until it returns something other than null, false
    /// or ""; returns that.
    async fn wait_until(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.run(script, args.clone()).await;
            if !matches!(&value, Value::Null | Value::Bool(false)) && value.as_str() != Some("") {
                return value;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what} never happened within {PATIENCE:?}; {}\nchromedriver: {}",
                    self.shown().await,
                    String::from_utf8_lossy(&self.driver_output.lock().unwrap())
                        .lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the main heading reads `heading`.
    async fn wait_for_heading(&self, heading: &str) {
        self.wait_until(
            &format!("a view headed \"{heading}\""),
            "const h = document.querySelector('main h1'); return h && h.textContent === arguments[0];",
            vec![json!(heading)],
        )
        .await;
    }

    async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css} on the page ({e}); {}", self.shown().await),
        }
    }

    async fn button(&self, text: &str) -> Element {
        let xpath = format!("//button[normalize-space()='{text}']");
        match self.client.find(Locator::XPath(&xpath)).await {
            Ok(element) => element,
            Err(e) => panic!(
                "no button \"{text}\" on the page ({e}); {}",
                self.shown().await
            ),
        }
    }

    async fn click(&self, element: Element) {
        element.click().await.expect("clicking");
    }

    /// Every input, select and textarea has a label (or an ARIA name), every image an alt,
    /// every button and link a name.
    async fn check_labels(&self, view: &str) {
        let unnamed = self
            .run(
                r##"
                const visible = (e) => e.type !== "hidden";
                const named = (e) => e.labels?.length || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby");
                return [
                  ...[...document.querySelectorAll("input, select, textarea")].filter(visible).filter((e) => !named(e)),
                  ...[...document.querySelectorAll("img")].filter((e) => !e.hidden && !e.hasAttribute("alt")),
                  ...[...document.querySelectorAll("button, a[href]")].filter((e) => !e.textContent.trim() && !named(e)),
                ].map((e) => e.outerHTML.slice(0, 160));
                "##,
                vec![],
            )
            .await;
        assert_eq!(
            unnamed,
            json!([]),
            "on the {view} view, controls without a label or name"
        );
    }

    /// Sizes the window so that the page gets `width` × `height` (the window's own frame
    /// aside).
    async fn set_viewport(&self, (width, height): (u32, u32)) {
        // The page's size after two frames at the window's new size.
        let inner = "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done([window.innerWidth, window.innerHeight])));";
        let mut size = (width, height);
        let mut seen = Vec::new();
        for _ in 0..5 {
            self.client
                .set_window_size(size.0, size.1)
                .await
                .expect("resizing the window");
            let got = self
                .client
                .execute_async(inner, vec![])
                .await
                .expect("the page's size");
            let got = (
                got[0].as_u64().unwrap_or(0) as u32,
                got[1].as_u64().unwrap_or(0) as u32,
            );
            if got == (width, height) {
                return;
            }
            seen.push((size, got));
            size = (
                (size.0 + width).saturating_sub(got.0),
                (size.1 + height).saturating_sub(got.1),
            );
        }
        panic!("the browser would not give the page {width}×{height}: (window, page) {seen:?}");
    }

    /// The page is no wider than the window: nothing to scroll sideways.
    async fn check_fits(&self, view: &str) {
        let widths = self
            .run(
                "const d = document.documentElement; return [d.scrollWidth, d.clientWidth];",
                vec![],
            )
            .await;
        assert!(
            widths[0].as_u64() <= widths[1].as_u64(),
            "on the {view} view at {}px the page scrolls sideways: scrollWidth {} > clientWidth {}",
            PHONE.0,
            widths[0],
            widths[1]
        );
    }

    /// The status the portal's API answers `path` (relative to the page) with, fetched
    /// from the page with its session's token.
    async fn fetch_status(&self, path: &str) -> Value {
        let script = r##"
            const [path, key, done] = arguments;
            fetch(new URL(path, document.baseURI), {
              headers: { authorization: `Bearer ${sessionStorage.getItem(key)}` },
            }).then((r) => done(r.status), (e) => done(String(e)));
        "##;
        self.client
            .execute_async(script, vec![json!(path), json!(TOKEN_KEY)])
            .await
            .unwrap_or_else(|e| panic!("fetching {path} from the page: {e}"))
    }

    /// Saves the top of the page as `name.png`, `viewport` wide and high; with `full`, as
    /// high as the page (up to MAX_SHOT_HEIGHT).
    async fn screenshot(&self, name: &str, viewport: (u32, u32), full: bool) {
        self.set_viewport(viewport).await;
        self.run("window.scrollTo(0, 0)", vec![]).await;
        if full {
            let page = self
                .run("return document.documentElement.scrollHeight", vec![])
                .await
                .as_u64()
                .unwrap_or(0) as u32;
            self.set_viewport((viewport.0, page.clamp(viewport.1, MAX_SHOT_HEIGHT)))
                .await;
        }
        let png = self.client.screenshot().await.expect("a screenshot");
        if full {
            self.set_viewport(viewport).await;
        }
        let mut dirs = vec![target_dir().join("portal-screenshots")];
        if std::env::var("HERALD_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            dirs.push(workspace_root().join("docs/portal"));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }
}

/// A small logo, inline as the portal takes it.
fn logo() -> String {
    let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="8" fill="#ffffff"/><path d="M7 23 16 8l9 15z" fill="#0f766e"/></svg>"##;
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}

#[tokio::test]
async fn a_tenant_manages_its_endpoints_in_the_portal_in_a_real_browser() {
    // Before anything starts: no chromium is a failure that says what to run.
    installed("chromium");
    installed("chromedriver");

    let ed25519 = herald_core::webhook::keys::generate_ed25519(&mut rand::rng());
    let logo = logo();
    let herald = TestHerald::start(&[
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_LOOPBACK", "true"),
        ("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0"),
        ("HERALD_ED25519_SIGNING_KEY", &ed25519),
        ("HERALD_PORTAL_NAME", "Example Shop"),
        ("HERALD_PORTAL_COLOR", "#0f766e"),
        ("HERALD_PORTAL_LOGO", &logo),
    ])
    .await;
    let receiver = TestReceiver::start(Script::always(204)).await;

    // Another tenant's endpoint, and one acme had already (loopback URLs: this machine
    // resolves no public name).
    let (globex, _) = herald
        .subscribe(
            "globex",
            &format!("http://{}/globex", receiver.addr()),
            &["*"],
        )
        .await;
    let erp = format!("http://{}/erp/orders", receiver.addr());
    let (status, _) = herald
        .call(
            "POST",
            "/v1/subscriptions",
            Some("acme"),
            Some(&json!({
                "url": erp,
                "event_types": ["order.*"],
                "description": "Orders into the ERP",
            })),
        )
        .await;
    assert_eq!(status, 201);

    let (status, session) = herald
        .call(
            "POST",
            "/v1/portal/sessions",
            Some("acme"),
            Some(&json!({
                "lifetime": "30m",
                "event_types": ["order.created", "order.shipped", "invoice.paid"],
            })),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let url = session["url"].as_str().expect("a url").to_owned();
    let token = session["token"].as_str().expect("a token").to_owned();

    let browser = Browser::start().await;
    let started = Instant::now();
    browser.set_viewport(DESKTOP).await;

    // The page takes the token from the fragment and takes it out of the address bar.
    browser.client.goto(&url).await.expect("opening the portal");
    browser.wait_for_heading("Endpoints").await;
    let address = browser.client.current_url().await.unwrap().to_string();
    assert!(
        !address.contains(&token) && !address.contains("token="),
        "the token stays in the address bar: {address}"
    );
    assert!(address.ends_with("#/endpoints"), "{address}");
    let kept = browser
        .run(
            "return sessionStorage.getItem(arguments[0])",
            vec![json!(TOKEN_KEY)],
        )
        .await;
    assert_eq!(kept, json!(token));
    // Branded as the deployment says.
    browser
        .wait_until(
            "the producer's name and logo in the bar",
            "return document.getElementById('brand').textContent === 'Example Shop' && !document.getElementById('logo').hidden",
            vec![],
        )
        .await;
    let listed = browser.find("main").await.text().await.unwrap();
    assert!(
        listed.contains(&erp) && !listed.contains("globex"),
        "{listed}"
    );
    browser.check_labels("endpoints").await;
    browser.screenshot("endpoints", DESKTOP, false).await;

    // A new endpoint through the form, for the receiver, taking one of the suggested types.
    browser.click(browser.find("a[href='#/new']").await).await;
    browser.wait_for_heading("Add an endpoint").await;
    let suggested = browser
        .run(
            "return [...document.querySelectorAll('#known-types option')].map((o) => o.value)",
            vec![],
        )
        .await;
    assert_eq!(
        suggested,
        json!(["invoice.paid", "order.*", "order.created", "order.shipped"]),
        "the session's event types and the tenant's are suggested"
    );
    browser.check_labels("new endpoint").await;
    browser
        .find("input[name='url']")
        .await
        .send_keys(&receiver.url())
        .await
        .unwrap();
    browser
        .find("input[name='event_types']")
        .await
        .send_keys("order.created")
        .await
        .unwrap();
    browser
        .find("input[name='description']")
        .await
        .send_keys("Local receiver")
        .await
        .unwrap();
    browser.screenshot("new-endpoint", DESKTOP, true).await;
    browser
        .click(browser.button("Add the endpoint").await)
        .await;

    // Its page, with the secret shown once.
    let secret = browser
        .wait_until(
            "the new endpoint's secret",
            "const s = document.getElementById('shown-secret'); return s && s.textContent;",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.wait_for_heading(&receiver.url()).await;
    let address = browser.client.current_url().await.unwrap().to_string();
    let id = address
        .split_once("#/endpoints/")
        .map(|(_, id)| id.to_owned())
        .unwrap_or_else(|| panic!("not on the endpoint's page: {address}"));
    let (status, created) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{id}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["url"], json!(receiver.url()));
    assert_eq!(created["event_types"], json!(["order.created"]));
    assert_eq!(created["description"], json!("Local receiver"));
    browser.check_labels("endpoint").await;

    // A test event: the receiver gets it signed with that secret, and the attempt log
    // shows it answered.
    browser
        .click(browser.button("Send a test event").await)
        .await;
    let got = receiver.wait_for(1, PATIENCE).await;
    let webhook = &got[0];
    assert_eq!(webhook.json()["type"], json!("herald.test"));
    let expected = v1_signature(
        &secret,
        webhook.header("webhook-id"),
        webhook.header("webhook-timestamp"),
        &webhook.body,
    );
    assert!(
        signature_entries(webhook.header("webhook-signature")).contains(&expected),
        "the webhook is not signed with the secret the page showed"
    );
    browser
        .wait_until(
            "the test delivery in the attempt log, delivered with a 204",
            r##"
            const row = [...document.querySelectorAll("#log tbody tr")]
              .find((r) => r.textContent.includes("herald.test"));
            return row && row.querySelector(".pill.delivered") && row.textContent.includes("204 in");
            "##,
            vec![],
        )
        .await;
    browser.screenshot("endpoint", DESKTOP, true).await;

    // A new secret, shown once.
    browser
        .click(browser.button("Rotate the secret").await)
        .await;
    let rotated = browser
        .wait_until(
            "the new secret",
            "const s = document.getElementById('shown-secret'); return s && s.textContent !== arguments[0] && s.textContent;",
            vec![json!(secret)],
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(rotated.starts_with("whsec_"), "{rotated}");
    assert_eq!(
        browser.find("#secret-title").await.text().await.unwrap(),
        "The new signing secret"
    );
    browser.button("Copy").await;
    browser.screenshot("rotated-secret", DESKTOP, false).await;

    // The rotation saved the endpoint: its settings are saved after it all the same
    // (the form sends the version the rotation made, not the one it was drawn with).
    browser
        .run(
            r#"
            document.querySelector("input[name=description]").value = "after the rotation";
            document.querySelector("main h1").dataset.old = "1";
            "#,
            vec![],
        )
        .await;
    browser.click(browser.button("Save").await).await;
    let saved = browser
        .wait_until(
            "the save's answer",
            "const s = document.getElementById('status').textContent; return (s.includes('Saved') || s.includes('version')) && s;",
            vec![],
        )
        .await;
    assert_eq!(saved.as_str(), Some("Saved"), "{saved}");
    // The page is drawn again after the save, under the same heading: what is clicked next
    // is on the new one.
    browser
        .wait_until(
            "the endpoint's page drawn again after the save",
            "const h = document.querySelector('main h1'); return h && h.dataset.old === undefined;",
            vec![],
        )
        .await;
    browser.wait_for_heading(&receiver.url()).await;

    // Away and back: neither secret is on the page any more.
    browser
        .click(browser.find("main a[href='#/endpoints']").await)
        .await;
    browser.wait_for_heading("Endpoints").await;
    browser
        .click(
            browser
                .find(&format!("main a[href='#/endpoints/{id}']"))
                .await,
        )
        .await;
    browser.wait_for_heading(&receiver.url()).await;
    browser
        .wait_until(
            "the attempt log",
            "return document.querySelector('#log h2') !== null",
            vec![],
        )
        .await;
    let html = browser.run("return document.body.outerHTML", vec![]).await;
    let html = html.as_str().unwrap();
    assert!(
        !html.contains(&rotated) && !html.contains(&secret) && !html.contains("shown-secret"),
        "a secret is shown again after navigating back"
    );

    // A refresh of the log redraws its rows alone: what is typed into the replay form
    // stays (the log refreshes every 1.5 s while a test event or a retry is followed).
    browser
        .run(
            r##"
            document.querySelector("input[name=since]").value = "2026-01-02T03:04";
            document.querySelector("#log table").dataset.old = "1";
            window.replayForm = document.querySelector("#log form");
            "##,
            vec![],
        )
        .await;
    browser.click(browser.button("Refresh").await).await;
    browser
        .wait_until(
            "the log's rows drawn again",
            "const t = document.querySelector('#log table'); return t !== null && t.dataset.old === undefined;",
            vec![],
        )
        .await;
    let kept = browser
        .run(
            "return [document.querySelector('#log form') === window.replayForm, document.querySelector('input[name=since]').value];",
            vec![],
        )
        .await;
    assert_eq!(
        kept,
        json!([true, "2026-01-02T03:04"]),
        "the replay form was drawn again"
    );

    // Replaying the last hour's delivered deliveries sends the test event again.
    browser
        .run(
            r#"
            const since = new Date(Date.now() - 3600e3);
            const local = new Date(since - since.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
            document.querySelector("input[name=since]").value = local;
            document.querySelector("select[name=state]").value = "delivered";
            "#,
            vec![],
        )
        .await;
    browser.click(browser.button("Replay").await).await;
    browser
        .wait_until(
            "the replay's answer",
            "return document.getElementById('status').textContent.includes('1 deliveries queued again');",
            vec![],
        )
        .await;
    let again = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(
        again[1].header("webhook-id"),
        again[0].header("webhook-id"),
        "the replay sends the same delivery again"
    );

    // Another tenant's endpoint is not found, by the page nor by its API with this session.
    browser
        .run(
            "location.hash = arguments[0]",
            vec![json!(format!("#/endpoints/{globex}"))],
        )
        .await;
    browser.wait_for_heading("Not found").await;
    let shown = browser.find("main").await.text().await.unwrap();
    assert!(!shown.contains("globex"), "{shown}");
    assert_eq!(
        browser
            .fetch_status(&format!("api/v1/subscriptions/{globex}"))
            .await,
        json!(404)
    );
    assert_eq!(
        browser
            .fetch_status(&format!("api/v1/subscriptions/{id}"))
            .await,
        json!(200),
        "the page's own endpoint"
    );

    // How to verify, with the deployment's public key.
    browser
        .click(browser.find("a[data-nav='keys']").await)
        .await;
    browser.wait_for_heading("Verifying webhooks").await;
    let key = browser.find("#ed25519-key").await.text().await.unwrap();
    assert!(!key.is_empty());
    browser.check_labels("signing keys").await;
    browser.screenshot("signing-keys", DESKTOP, false).await;

    // A phone: every view fits its width.
    browser.set_viewport(PHONE).await;
    browser.check_fits("signing keys").await;
    for (hash, heading, view) in [
        ("#/endpoints".to_owned(), "Endpoints", "endpoints"),
        ("#/new".to_owned(), "Add an endpoint", "new endpoint"),
        (
            format!("#/endpoints/{id}"),
            receiver.url().as_str(),
            "endpoint",
        ),
    ] {
        browser
            .run("location.hash = arguments[0]", vec![json!(hash)])
            .await;
        browser.wait_for_heading(heading).await;
        browser
            .wait_until(
                "the view drawn",
                "return document.querySelector('main h1') !== null",
                vec![],
            )
            .await;
        if view == "endpoint" {
            browser
                .wait_until(
                    "the attempt log",
                    "return document.querySelector('#log tbody tr') !== null",
                    vec![],
                )
                .await;
        }
        browser.check_fits(view).await;
    }
    browser.screenshot("phone", PHONE, true).await;

    // Deleting asks first, then the endpoint is gone.
    browser.set_viewport(DESKTOP).await;
    browser.click(browser.button("Delete").await).await;
    let question = browser
        .client
        .get_alert_text()
        .await
        .expect("a confirmation");
    assert!(question.contains(&receiver.url()), "{question}");
    browser.client.accept_alert().await.unwrap();
    browser.wait_for_heading("Endpoints").await;
    browser
        .wait_until(
            "the endpoint gone from the list",
            "return ![...document.querySelectorAll('main a')].some((a) => a.getAttribute('href') === '#/endpoints/' + arguments[0])",
            vec![json!(id)],
        )
        .await;
    assert_eq!(
        browser.find("#status").await.text().await.unwrap(),
        "Endpoint deleted"
    );
    let (status, _) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{id}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    eprintln!("the browser's part took {:?}", started.elapsed());
    browser.close().await;
    herald.shutdown().await;
}

/// Opens a portal session for `tenant` and the page in a new browser, on the endpoint list.
async fn open_portal(herald: &TestHerald, tenant: &str) -> Browser {
    let (status, session) = herald
        .call("POST", "/v1/portal/sessions", Some(tenant), None)
        .await;
    assert_eq!(status, 201, "{session}");
    let browser = Browser::start().await;
    browser.set_viewport(DESKTOP).await;
    browser
        .client
        .goto(session["url"].as_str().expect("a url"))
        .await
        .expect("opening the portal");
    browser.wait_for_heading("Endpoints").await;
    browser
}

#[tokio::test]
async fn the_portal_lists_every_endpoint_past_the_first_hundred() {
    installed("chromium");
    installed("chromedriver");
    let herald = TestHerald::start(&[
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_LOOPBACK", "true"),
        ("HERALD_MAX_SUBSCRIPTIONS_PER_TENANT", "200"),
    ])
    .await;
    // More endpoints than a page of the listing (100), each with an event type of its own;
    // nothing is delivered to them.
    let mut ids = Vec::new();
    for i in 0..101 {
        let (id, _) = herald
            .subscribe(
                "acme",
                &format!("http://127.0.0.1:9/hooks/{i}"),
                &[&format!("kind{i:03}.created")],
            )
            .await;
        ids.push(id);
    }

    let browser = open_portal(&herald, "acme").await;
    let listed = browser
        .wait_until(
            "the endpoints listed",
            "const links = [...document.querySelectorAll('main [role=listitem] a')]; return links.length && links.map((a) => a.getAttribute('href'));",
            vec![],
        )
        .await;
    let mut listed: Vec<String> = serde_json::from_value(listed).unwrap();
    listed.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("#/endpoints/{id}")).collect();
    expected.sort();
    assert_eq!(listed, expected, "every endpoint is listed, once");
    assert_eq!(
        browser.find("#endpoint-count").await.text().await.unwrap(),
        "101 endpoints"
    );
    assert!(
        browser
            .client
            .find(Locator::Css("#endpoints-cut"))
            .await
            .is_err(),
        "the list says it was cut short"
    );
    let text = browser.find("main").await.text().await.unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.trim() == "null" || l.trim() == "undefined"),
        "{text}"
    );

    // The first endpoint, the oldest, opens and is deleted from the page.
    let oldest = &ids[0];
    browser
        .click(
            browser
                .find(&format!("main a[href='#/endpoints/{oldest}']"))
                .await,
        )
        .await;
    browser.wait_for_heading("http://127.0.0.1:9/hooks/0").await;
    browser.click(browser.button("Delete").await).await;
    browser.client.accept_alert().await.unwrap();
    browser.wait_for_heading("Endpoints").await;
    browser
        .wait_until(
            "100 endpoints listed",
            "return document.getElementById('endpoint-count')?.textContent === '100 endpoints'",
            vec![],
        )
        .await;
    let (status, _) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{oldest}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Every endpoint's event type is suggested, the oldest ones' too.
    browser
        .run("location.hash = arguments[0]", vec![json!("#/new")])
        .await;
    browser.wait_for_heading("Add an endpoint").await;
    let suggested = browser
        .run(
            "return [...document.querySelectorAll('#known-types option')].map((o) => o.value)",
            vec![],
        )
        .await;
    let expected: Vec<String> = (1..101).map(|i| format!("kind{i:03}.created")).collect();
    assert_eq!(suggested, json!(expected));

    browser.close().await;
    herald.shutdown().await;
}

/// Waits until the attempt log of `subscription` (acme's) holds `count` deliveries, each
/// delivered: deliver records them as it takes them from the queue, after the publish.
async fn settled(herald: &TestHerald, subscription: &str, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, listed) = herald
            .call(
                "GET",
                &format!("/v1/subscriptions/{subscription}/deliveries?limit=100"),
                Some("acme"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        let deliveries = listed["data"].as_array().expect("deliveries");
        if deliveries.len() == count && deliveries.iter().all(|d| d["state"] == "delivered") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} deliveries never settled in {PATIENCE:?}: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_portals_attempt_log_shows_older_deliveries_on_asking() {
    installed("chromium");
    installed("chromedriver");
    let herald = TestHerald::start(&[
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_LOOPBACK", "true"),
        ("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0"),
    ])
    .await;
    let receiver = TestReceiver::start(Script::always(204)).await;
    let (id, _) = herald
        .subscribe("acme", &receiver.url(), &["order.*"])
        .await;
    // More deliveries than a page of the log (50), each of an event type of its own.
    let events: Vec<Value> = (0..60)
        .map(|i| json!({"type": format!("order.n{i:02}"), "data": {"n": i}}))
        .collect();
    let (status, answer) = herald.publish("acme", json!({"events": events})).await;
    assert_eq!(status, 202, "{answer}");
    settled(&herald, &id, 60).await;

    let browser = open_portal(&herald, "acme").await;
    browser
        .run(
            "location.hash = arguments[0]",
            vec![json!(format!("#/endpoints/{id}"))],
        )
        .await;
    browser.wait_for_heading(&receiver.url()).await;
    // The event types and delivery ids the log's rows show.
    let rows = "const rows = [...document.querySelectorAll('#log tbody tr')]; \
                return rows.length === arguments[0] && rows.map((r) => [r.cells[0].firstChild.textContent, r.querySelector('small').textContent]);";
    let shown = |value: Value| -> (Vec<String>, usize) {
        let rows: Vec<(String, String)> = serde_json::from_value(value).unwrap();
        let ids: std::collections::BTreeSet<&String> = rows.iter().map(|(_, id)| id).collect();
        let mut types: Vec<String> = rows.iter().map(|(t, _)| t.clone()).collect();
        types.sort();
        (types, ids.len())
    };
    let newest = browser
        .wait_until("the newest 50 deliveries", rows, vec![json!(50)])
        .await;
    let (_, distinct) = shown(newest);
    assert_eq!(distinct, 50);
    browser.check_labels("endpoint").await;

    // The older ones after "Show older", and then nothing older to ask for.
    browser.click(browser.button("Show older").await).await;
    let all = browser
        .wait_until("every delivery", rows, vec![json!(60)])
        .await;
    let expected: Vec<String> = (0..60).map(|i| format!("order.n{i:02}")).collect();
    assert_eq!(shown(all), (expected.clone(), 60));
    browser
        .wait_until(
            "\"Show older\" gone",
            "return document.getElementById('log-more').hidden",
            vec![],
        )
        .await;

    // A refresh reads the newest page again and keeps the older ones below it: a new
    // delivery joins them, and none is lost or shown twice.
    let (status, answer) = herald
        .publish("acme", json!({"type": "order.n60", "data": {"n": 60}}))
        .await;
    assert_eq!(status, 202, "{answer}");
    settled(&herald, &id, 61).await;
    browser.click(browser.button("Refresh").await).await;
    let refreshed = browser
        .wait_until("the new delivery above the others", rows, vec![json!(61)])
        .await;
    let mut expected = expected;
    expected.push("order.n60".to_owned());
    assert_eq!(shown(refreshed), (expected, 61));
    let first = browser
        .run(
            "return document.querySelector('#log tbody tr').cells[0].firstChild.textContent",
            vec![],
        )
        .await;
    assert_eq!(first, json!("order.n60"), "the newest delivery comes first");

    browser.close().await;
    herald.shutdown().await;
}
