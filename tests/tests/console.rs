//! End-to-end: the web console in real headless Chromium (Debian's chromium, driven by
//! chromedriver over WebDriver) against a lab's fleetds, and `/metrics` of those
//! fleetds parsed as Prometheus text. Needs root (the lab) and chromium +
//! chromium-driver (scripts/bootstrap.sh installs them); without them it fails.
//! Screenshots go to the target directory; `FLEET_UPDATE_SCREENSHOTS=1` refreshes the
//! README's copies in docs/.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use fleet_tests::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Logs 20 numbered lines, then a tick a second (for the journal to follow live).
const HELLO: &str = "[Unit]
Description=hello

[Service]
ExecStart=/bin/bash -c 'for i in {1..20}; do echo \"hello line $$i\"; done; i=0; while sleep 1; do i=$$((i+1)); echo \"tick $$i\"; done'
";

/// Wanted on a machine no machine is: the engine cannot place it and says why.
const NOWHERE: &str = "[Service]
ExecStart=/bin/sleep infinity

[X-Fleet]
MachineMetadata=role=nowhere
";

/// How long the page (or fleetd through it) may take to answer before the test calls
/// it frozen: generous, for a loaded shared host; the measured figures are printed.
const FROZEN: Duration = Duration::from_secs(30);

/// chromedriver on a free port, killed on drop, with its own profile directory.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the console test needs Debian's chromium and chromium-driver \
                 (run scripts/bootstrap.sh, or apt-get install chromium chromium-driver)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("chromium profile dir");
        wait_until("chromedriver listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Driver {
            child,
            port,
            profile,
        }
    }

    async fn browser(&self) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,760",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([format!("--user-data-dir={}", self.profile.path().display())])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": CHROMIUM, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("WebDriver session with chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `cond` (evaluated in the browser by the caller) with a deadline.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !cond().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed()
}

/// The value of a JavaScript expression in the page.
async fn js(c: &Client, expr: &str) -> serde_json::Value {
    c.execute(&format!("return ({expr});"), vec![])
        .await
        .expect("run script")
}

/// How long the page takes to answer a script, and fleetd (through the page, with its
/// cookie) a request; either past [`FROZEN`] fails the test.
async fn answers(c: &Client) -> (Duration, Duration) {
    let t = Instant::now();
    tokio::time::timeout(
        FROZEN,
        js(c, "document.querySelectorAll('#units tbody tr').length"),
    )
    .await
    .unwrap_or_else(|_| panic!("the page did not answer within {FROZEN:?}"));
    let page = t.elapsed();
    let t = Instant::now();
    let status = tokio::time::timeout(
        FROZEN,
        c.execute_async(
            "const done = arguments[0]; fetch('/ui/api/me').then(r => done(r.status), e => done(-1));",
            vec![],
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("fleetd did not answer the page within {FROZEN:?}"))
    .expect("run fetch");
    assert_eq!(
        status,
        serde_json::json!(200),
        "fleetd answered the page with {status}"
    );
    (page, t.elapsed())
}

/// The number of rows in the units table.
async fn unit_rows(c: &Client) -> u64 {
    js(c, "document.querySelectorAll('#units tbody tr').length")
        .await
        .as_u64()
        .unwrap_or(0)
}

/// Clicks the element `css` names; again if a live update replaced it meanwhile.
async fn click(c: &Client, css: &str) {
    eventually(&format!("click {css}"), Duration::from_secs(10), || async {
        match c.find(Locator::Css(css)).await {
            Ok(e) => e.click().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
}

/// Clicks the unit page's `action` button and waits until the page shows `desired`.
async fn act_on_page(c: &Client, action: &str, desired: &str) {
    let css = format!("#unit-actions button[data-action={action}]");
    c.wait()
        .for_element(Locator::Css(&css))
        .await
        .unwrap_or_else(|e| panic!("{action} button: {e}"));
    click(c, &css).await;
    eventually(
        &format!("desired {desired} after {action}"),
        Duration::from_secs(20),
        || async { text(c, "#unit-desired").await == desired },
    )
    .await;
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn login(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/"))
        .await
        .expect("open the console");
    let field = c
        .wait()
        .for_element(Locator::Css("#login-token"))
        .await
        .expect("login form");
    eventually("login form shown", Duration::from_secs(5), || async {
        field.is_displayed().await.unwrap_or(false)
    })
    .await;
    field.send_keys(token).await.expect("type the token");
    c.find(Locator::Css("#login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("logged in", Duration::from_secs(5), || async {
        !text(c, "#who").await.is_empty()
    })
    .await;
}

/// `GET /metrics` of a fleetd with `token`, parsed as Prometheus text.
fn scrape(base: &str, token: &str) -> prometheus_parse::Scrape {
    let out = Command::new("curl")
        .args([
            "-sSf",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "--",
        ])
        .arg(format!("{base}/metrics"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "GET /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8(out.stdout).expect("metrics are UTF-8");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text")
}

/// The sum of `name`'s samples whose labels include `labels`.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// POST from the page with the page's cookie: the HTTP status.
async fn forged_post(c: &Client, path: &str) -> i64 {
    let v = c
        .execute_async(
            "const [path, done] = arguments; fetch(path, {method: 'POST'}).then(r => done(r.status), e => done(-1));",
            vec![serde_json::json!(path)],
        )
        .await
        .expect("run fetch");
    v.as_i64().unwrap_or(-1)
}

/// fleetd's CPU time so far (user + system) in `node`.
fn fleetd_cpu(lab: &Lab, node: &str) -> Duration {
    let stat = sh(lab, node, "cat /proc/$(pidof fleetd)/stat").1;
    let f: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Keeps a screenshot in the target directory (`console-<name>.png`); with
/// `FLEET_UPDATE_SCREENSHOTS=1` also in docs/, the README's copy.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("take a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let file = format!("console-{name}.png");
    std::fs::write(target_dir().join(&file), &png).expect("write the screenshot");
    if std::env::var_os("FLEET_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::write(docs.join(&file), &png).expect("write the screenshot to docs/");
    }
}

#[test]
fn console_in_chromium_and_metrics() {
    let driver = Driver::start();
    let dir = UnitDir::new(&[
        ("hello.service", HELLO),
        ("nowhere.service", NOWHERE),
        ("web.service", "[Service]\nExecStart=/bin/sleep infinity\n"),
    ]);
    let mut config = ClusterConfig::with_machines(&unique_name("console"), 3);
    config.agent_ttl = "3s".into();
    // The headless browser has no client certificate for the API's mutual TLS: the
    // console is tested with bearer tokens on an insecure lab.
    config.secure = false;
    let lab = boot_registered(&config);
    let etcd = Fleetctl::etcd(&lab, dir.path());
    let token = |role: &str| {
        etcd.ok(&[
            "token", "create", "--role", role, "--ttl", "1h", "--user", "e2e",
        ])
        .trim()
        .to_string()
    };
    let operator = token("operator");
    let viewer = token("viewer");
    let node = lab.machines()[0].name.clone();
    let base = api_endpoint(&lab, &node);
    let machines = etcd.machines();
    // Metadata as list-machines shows it ("k=v,k2=v2" or "-"), by machine.
    let metadata: Vec<String> = etcd
        .ok(&["list-machines", "--no-legend", "--full"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .filter(|m| m != "-")
        .flat_map(|m| m.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    // A unit that cannot be placed, and one in a namespace of its own.
    etcd.ok(&["start", "--no-block", "nowhere.service"]);
    etcd.ok(&["namespace", "create", "team"]);
    let mut team = etcd.clone();
    team.flags.push("--namespace=team".into());
    team.ok(&["submit", "web.service"]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(driver.browser());

    // Metrics before, from the browser's fleetd and every other (a viewer may read).
    let before: Vec<_> = lab
        .machines()
        .iter()
        .map(|m| scrape(&api_endpoint(&lab, &m.name), &viewer))
        .collect();

    rt.block_on(async {
        // The console needs a token even on this (admin) plaintext connection.
        login(&c, &base, &operator).await;
        assert!(text(&c, "#who").await.contains("operator"));
        // Every machine, and the engine leader.
        eventually("all machines shown", Duration::from_secs(10), || async {
            let shown = c
                .find_all(Locator::Css("#machines tbody tr"))
                .await
                .unwrap()
                .len();
            shown == machines.len()
        })
        .await;
        let page = text(&c, "#machines").await;
        for (id, ip) in &machines {
            assert!(page.contains(id.as_str()), "machine {id} not shown: {page}");
            let row = text(&c, &format!("#machines tr[data-id='{id}']")).await;
            assert!(
                row.contains(ip.as_str()),
                "machine {id}'s IP {ip} not shown: {row}"
            );
        }
        for kv in &metadata {
            assert!(
                page.contains(kv.as_str()),
                "metadata {kv} not shown: {page}"
            );
        }
        let leader = text(&c, "#leader").await;
        assert!(
            machines.contains_key(&leader),
            "engine leader {leader:?} not a machine"
        );
        assert!(
            text(&c, &format!("#machines tr[data-id='{leader}']"))
                .await
                .contains("leader"),
            "the leader's row is not marked"
        );
        js(&c, "window.notReloaded = true").await;

        // Submit from a pasted unit file, then start it from its row.
        c.goto(&format!("{base}/ui/#/units")).await.unwrap();
        js(&c, "window.notReloaded = true").await;
        c.find(Locator::Css("#submit-box summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Css("#submit-name"))
            .await
            .unwrap()
            .send_keys("hello.service")
            .await
            .unwrap();
        c.find(Locator::Css("#submit-text"))
            .await
            .unwrap()
            .send_keys(HELLO)
            .await
            .unwrap();
        c.find(Locator::Css("#submit-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let start = "button[data-action=start][data-unit='hello.service']";
        c.wait()
            .for_element(Locator::Css(start))
            .await
            .expect("start button of the new unit");
        c.find(Locator::Css(start))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let took = eventually(
            "hello.service active on the page",
            Duration::from_secs(30),
            || async { text(&c, "tr[data-unit='hello.service'] .active").await == "active" },
        )
        .await;
        eprintln!("console: start clicked -> shown active after {took:?}");
        assert_eq!(
            js(&c, "window.notReloaded === true").await,
            serde_json::json!(true),
            "the page reloaded"
        );
        // Units by state on the machines page: hello's machine runs one active unit.
        c.goto(&format!("{base}/ui/#/machines")).await.unwrap();
        let on = etcd
            .active()
            .into_iter()
            .find(|r| r.unit == "hello.service")
            .expect("hello.service in list-units")
            .machine;
        eventually(
            "units by state on the machine",
            Duration::from_secs(10),
            || async {
                text(&c, &format!("#machines tr[data-id='{on}']"))
                    .await
                    .contains("active 1")
            },
        )
        .await;
        c.goto(&format!("{base}/ui/#/units")).await.unwrap();

        // Filter (namespace, state) and search; the unplaced unit says why.
        let team_sel = c.find(Locator::Css("#namespace")).await.unwrap();
        team_sel
            .select_by_value("team")
            .await
            .expect("choose namespace team");
        eventually("namespace team alone", Duration::from_secs(5), || async {
            unit_rows(&c).await == 1 && text(&c, "#units tbody tr").await.contains("web.service")
        })
        .await;
        // An operator changes namespace default's units only: no buttons here, and the
        // API refuses the request the page would not send.
        let buttons = c
            .find_all(Locator::Css("#units tbody button"))
            .await
            .unwrap();
        assert!(
            buttons.is_empty(),
            "an operator sees buttons in namespace team"
        );
        assert_eq!(
            forged_post(&c, "/ui/api/units/team:web.service/start").await,
            403
        );
        team_sel.select_by_value("").await.unwrap();
        let state_sel = c.find(Locator::Css("#state-filter")).await.unwrap();
        state_sel.select_by_value("unplaced").await.unwrap();
        eventually(
            "the unplaced unit alone",
            Duration::from_secs(30),
            || async {
                unit_rows(&c).await == 1
                    && text(&c, "tr[data-unit='nowhere.service'] .reason")
                        .await
                        .contains("nowhere")
            },
        )
        .await;
        state_sel.select_by_value("active").await.unwrap();
        eventually("active units alone", Duration::from_secs(5), || async {
            unit_rows(&c).await == 1 && text(&c, "#units tbody tr").await.contains("hello.service")
        })
        .await;
        state_sel.select_by_value("").await.unwrap();
        let search = c.find(Locator::Css("#filter")).await.unwrap();
        search.send_keys("nowh").await.unwrap();
        eventually("search", Duration::from_secs(5), || async {
            unit_rows(&c).await == 1 && text(&c, "#units tbody tr").await.contains("nowhere")
        })
        .await;
        search.clear().await.unwrap();
        search.send_keys(" ").await.unwrap();
        search.send_keys("\u{E003}").await.unwrap(); // backspace: an input event
        eventually("every unit again", Duration::from_secs(5), || async {
            unit_rows(&c).await == 3
        })
        .await;
        screenshot(&c, "units").await;

        // Its page: file, state and the journal, streaming.
        c.find(Locator::Css("tr[data-unit='hello.service'] a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        eventually("journal lines", Duration::from_secs(20), || async {
            text(&c, "#journal").await.contains("hello line 20")
        })
        .await;
        // Live: lines logged after the page opened arrive without a reload.
        let ticks = |j: String| j.lines().filter(|l| l.contains("tick ")).count();
        let first = ticks(text(&c, "#journal").await);
        eventually(
            "new journal lines, live",
            Duration::from_secs(20),
            || async { ticks(text(&c, "#journal").await) >= first + 2 },
        )
        .await;
        assert!(text(&c, "#unit-file").await.contains("ExecStart="));
        assert_eq!(text(&c, "#unit-states .active").await, "active");
        screenshot(&c, "unit").await;
        // The page's journal is a stream the browser's fleetd counts as open.
        let open = value(&scrape(&base, &viewer), "fleet_journal_streams", &[]);
        assert!(
            open >= 1.0,
            "fleet_journal_streams {open} with the journal open"
        );
    });
    assert_eq!(
        etcd.active().len(),
        1,
        "hello.service active in the cluster"
    );

    // A burst of 1,000 changes: the page keeps answering and catches up.
    let burst = UnitDir::new(&[]);
    let names: Vec<String> = (0..1000).map(|i| format!("burst-{i:04}.service")).collect();
    for n in &names {
        burst.write(n, "[Service]\nExecStart=/bin/true\n");
    }
    let burst_ctl = Fleetctl::etcd(&lab, burst.path());
    let cpu0 = fleetd_cpu(&lab, &node);
    let renders0 = rt
        .block_on(js(&c, "window.fleetConsole.renders"))
        .as_u64()
        .unwrap_or(0);
    rt.block_on(async { c.goto(&format!("{base}/ui/#/units")).await.unwrap() });
    let t0 = Instant::now();
    let args: Vec<&str> = std::iter::once("submit")
        .chain(names.iter().map(String::as_str))
        .collect();
    let (page_slowest, fleetd_slowest) = std::thread::scope(|s| {
        let h = s.spawn(|| burst_ctl.ok(&args));
        // While the burst lands, the page and fleetd keep answering.
        let (mut page, mut fleetd) = (Duration::ZERO, Duration::ZERO);
        while !h.is_finished() {
            let (p, f) = rt.block_on(answers(&c));
            page = page.max(p);
            fleetd = fleetd.max(f);
            std::thread::sleep(Duration::from_millis(20));
        }
        h.join().unwrap();
        (page, fleetd)
    });
    let submitted = t0.elapsed();
    let done_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let shown = rt.block_on(eventually(
        "1,003 units shown",
        Duration::from_secs(120),
        || async { unit_rows(&c).await == 1003 },
    ));
    let cpu = fleetd_cpu(&lab, &node) - cpu0;
    let page = rt.block_on(js(&c, "window.fleetConsole"));
    let renders = page["renders"].as_u64().unwrap_or(0) - renders0;
    let arrived = page["arrived"].as_i64().unwrap_or(0) - done_ms;
    let rendered = page["rendered"].as_i64().unwrap_or(0) - done_ms;
    eprintln!(
        "console: 1,000 units submitted in {submitted:?}; last view arrived {arrived} ms and was \
         drawn {rendered} ms after the submit ended (seen by the test {shown:?} after); \
         {renders} renders; slowest answer during the burst: page {page_slowest:?}, fleetd \
         {fleetd_slowest:?}; fleetd CPU {cpu:?} over {:?}",
        t0.elapsed()
    );

    // Then 1,000 units loaded into systemd across the machines: thousands of state
    // changes (schedule, loads, systemd states) while the page keeps answering.
    let mut args = vec!["load", "--no-block"];
    args.extend(names.iter().map(String::as_str));
    let cpu0 = fleetd_cpu(&lab, &node);
    let t0 = Instant::now();
    burst_ctl.ok(&args);
    let loaded = "[...document.querySelectorAll('#units tbody td.active')]\
                  .filter(td => td.textContent !== '-').length";
    let (mut page_slowest, mut fleetd_slowest) = (Duration::ZERO, Duration::ZERO);
    loop {
        let (p, f) = rt.block_on(answers(&c));
        page_slowest = page_slowest.max(p);
        fleetd_slowest = fleetd_slowest.max(f);
        let n = rt.block_on(js(&c, loaded)).as_u64().unwrap_or(0);
        if n == 1001 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "1,000 loaded units not shown within 120 s ({n} shown)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = fleetd_cpu(&lab, &node) - cpu0;
    let updates = rt.block_on(js(&c, "window.fleetConsole.updates"));
    eprintln!(
        "console: 1,000 units loaded and their states shown after {:?}; slowest answer: page \
         {page_slowest:?}, fleetd {fleetd_slowest:?}; page views received so far {updates}; \
         fleetd CPU {cpu:?}",
        t0.elapsed()
    );

    // The other actions, from a unit's page: start, stop, unload, destroy.
    rt.block_on(async {
        c.goto(&format!("{base}/ui/#/unit/burst-0000.service"))
            .await
            .unwrap();
        eventually("the burst unit's page", Duration::from_secs(10), || async {
            text(&c, "#unit-desired").await == "loaded"
        })
        .await;
        act_on_page(&c, "start", "launched").await;
        act_on_page(&c, "stop", "loaded").await;
        act_on_page(&c, "unload", "inactive").await;
        // The page asks before destroying: a first click arms the button, a second
        // destroys.
        let destroy = "#unit-actions button[data-action=destroy]";
        click(&c, destroy).await;
        let armed = format!("{destroy}.armed");
        c.wait()
            .for_element(Locator::Css(&armed))
            .await
            .expect("destroy asks again");
        assert!(
            etcd.unit_files().contains_key("burst-0000.service"),
            "destroyed at the first click"
        );
        click(&c, &armed).await;
        c.goto(&format!("{base}/ui/#/units")).await.unwrap();
        eventually(
            "the destroyed unit gone",
            Duration::from_secs(30),
            || async {
                unit_rows(&c).await == 1002
                    && js(
                        &c,
                        "!document.querySelector(\"#units tbody tr[data-unit='burst-0000.service']\")",
                    )
                    .await
                        == serde_json::json!(true)
            },
        )
        .await;
    });
    assert!(
        !etcd.unit_files().contains_key("burst-0000.service"),
        "burst-0000.service destroyed in the cluster"
    );

    // A viewer sees no action buttons, and its forged request is refused.
    rt.block_on(async {
        c.find(Locator::Css("#logout"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        login(&c, &base, &viewer).await;
        assert!(text(&c, "#who").await.contains("viewer"));
        c.goto(&format!("{base}/ui/#/units")).await.unwrap();
        eventually(
            "units listed for the viewer",
            Duration::from_secs(10),
            || async { unit_rows(&c).await == 1002 },
        )
        .await;
        let buttons = c
            .find_all(Locator::Css("button[data-action]"))
            .await
            .unwrap();
        assert!(
            buttons.is_empty(),
            "a viewer sees {} action buttons",
            buttons.len()
        );
        assert!(
            !c.find(Locator::Css("#submit-box"))
                .await
                .unwrap()
                .is_displayed()
                .await
                .unwrap()
        );
        assert_eq!(
            forged_post(&c, "/ui/api/units/hello.service/stop").await,
            403
        );
    });
    assert_eq!(
        etcd.active().len(),
        1,
        "the viewer's forged stop changed nothing"
    );

    // The counters moved: API calls on the browser's fleetd, a start on the unit's
    // machine, placements by the engine leader, etcd requests everywhere.
    let after: Vec<_> = lab
        .machines()
        .iter()
        .map(|m| scrape(&api_endpoint(&lab, &m.name), &viewer))
        .collect();
    let sum = |s: &[prometheus_parse::Scrape], n: &str, l: &[(&str, &str)]| -> f64 {
        s.iter().map(|x| value(x, n, l)).sum()
    };
    let moved = |n: &str, l: &[(&str, &str)]| {
        let (b, a) = (sum(&before, n, l), sum(&after, n, l));
        assert!(a > b, "{n}{l:?} did not move: {b} -> {a}");
    };
    moved(
        "fleet_api_calls_total",
        &[
            ("method", "POST /ui/api/units/:name/start"),
            ("code", "204"),
        ],
    );
    moved(
        "fleet_api_calls_total",
        &[("method", "POST /ui/api/units/:name/stop"), ("code", "403")],
    );
    moved("fleet_agent_actions_total", &[("kind", "StartUnit")]);
    moved("fleet_engine_placements_total", &[]);
    moved("fleet_etcd_request_seconds_count", &[]);
    moved("fleet_dbus_call_seconds_count", &[]);
    moved("fleet_lease_renewals_total", &[]);
    assert!(sum(&after, "fleet_engine_pass_seconds_count", &[]) > 0.0);
    moved("fleet_agent_action_seconds_count", &[]);
    // nowhere.service: the leader's last pass could not place it.
    assert!(sum(&after, "fleet_engine_unplaced_units", &[]) >= 1.0);
    assert!(sum(&after, "fleet_engine_leadership_changes_total", &[]) >= 1.0);
    // Every family the issue and the README list, on every fleetd (labelled ones once
    // they have a sample: etcd errors may have none).
    for s in &after {
        for family in [
            "fleet_engine_pass_seconds",
            "fleet_engine_placements",
            "fleet_engine_unplaced_units",
            "fleet_engine_leadership_changes",
            "fleet_agent_actions",
            "fleet_agent_action_seconds",
            "fleet_dbus_call_seconds",
            "fleet_etcd_request_seconds",
            "fleet_lease_renewals",
            "fleet_lease_losses",
            "fleet_api_calls",
            "fleet_journal_streams",
        ] {
            assert!(
                s.docs.contains_key(family),
                "{family} missing from /metrics: {:?}",
                s.docs.keys().collect::<Vec<_>>()
            );
        }
    }

    // A machine that leaves the cluster stays on the page, shown as lost.
    let leaving = lab
        .machines()
        .iter()
        .map(|m| m.name.clone())
        .find(|n| *n != node)
        .unwrap();
    let (code, _, err) = sh(&lab, &leaving, "systemctl stop fleet.service");
    assert_eq!(code, 0, "{err}");
    rt.block_on(async {
        c.goto(&format!("{base}/ui/#/machines")).await.unwrap();
        eventually(
            "the stopped machine shown as lost",
            Duration::from_secs(20),
            || async {
                js(
                    &c,
                    "document.querySelectorAll('#machines tbody tr.lost').length",
                )
                .await
                    == serde_json::json!(1)
            },
        )
        .await;
        let rows = c
            .find_all(Locator::Css("#machines tbody tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), machines.len(), "a lost machine left the list");
    });

    // The viewer's token revoked: the open page returns to the login by itself.
    let list = etcd.ok(&["token", "list"]);
    let id = list
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"viewer"))
        .and_then(|f| f.first().map(|id| id.to_string()))
        .unwrap_or_else(|| panic!("the viewer token in: {list}"));
    etcd.ok(&["token", "revoke", &id]);
    rt.block_on(async {
        let took = eventually(
            "the login shown after the token was revoked",
            Duration::from_secs(20),
            || async {
                js(&c, "!document.querySelector('#login').hidden").await == serde_json::json!(true)
            },
        )
        .await;
        eprintln!("console: token revoked -> login shown after {took:?}");
        c.close().await.unwrap();
    });
    drop(lab);
}
