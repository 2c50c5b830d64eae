//! The console's endpoints and bearer tokens against a real etcd, over loopback TCP
//! (where the connection alone is admin): `/ui/api/` needs a token, a token's role is
//! what counts, a revoked token is refused, and `/metrics` answers Prometheus text.

use std::path::PathBuf;
use std::time::Duration;

use fleet_api::{ApiContext, ListenConfig, Listeners, serve_on};
use fleet_core::MachineId;
use fleet_registry::{Registry, RegistryConfig};
use fleet_testkit::EtcdServer;
use tokio_util::sync::CancellationToken;

/// curl: (HTTP status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A real etcd and a registry handle on it (keep the etcd: dropping it stops etcd).
async fn etcd_and_registry() -> (EtcdServer, Registry) {
    let etcd = EtcdServer::start().expect("start etcd (apt-get install etcd-server)");
    let reg = Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap();
    (etcd, reg)
}

/// Machine m1's API (console included) on loopback TCP, and on `unix` if given, over
/// `reg`: its base URL and the token that stops it.
fn serve(reg: &Registry, unix: Option<PathBuf>) -> (String, CancellationToken) {
    let listeners = Listeners::open(&ListenConfig {
        unix,
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        tls: None,
        socket_activation: false,
        auth: Default::default(),
    })
    .unwrap();
    let base = format!("http://{}", listeners.tcp_addrs()[0]);
    let stop = CancellationToken::new();
    let ctx = ApiContext::new(reg.clone(), MachineId::new("m1").unwrap());
    tokio::spawn(serve_on(listeners, ctx, stop.clone()));
    (base, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_needs_tokens_and_honours_their_roles() {
    let (_etcd, reg) = etcd_and_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let (base, stop) = serve(&reg, Some(dir.path().join("fleet.sock")));
    let (viewer, _) = reg
        .create_token("v", "viewer", Duration::from_secs(600))
        .await
        .unwrap();
    let (operator, op_info) = reg
        .create_token("o", "operator", Duration::from_secs(600))
        .await
        .unwrap();
    let url = move |p: &str| format!("{base}{p}");
    let bearer = |t: &str| format!("Authorization: Bearer {t}");

    let url2 = url.clone();
    let jar_path = dir.path().join("cookies");
    let done = tokio::task::spawn_blocking(move || {
        // The page itself is public; its data is not, even on an admin connection.
        let (code, page) = curl(&[&url("/ui/")]);
        assert_eq!(code, 200);
        assert!(page.contains("/ui/app.js"));
        let (code, body) = curl(&[&url("/ui/api/me")]);
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("log in with a token"), "{body}");

        // A token's role, not the connection's.
        let (code, body) = curl(&["-H", &bearer(&viewer), &url("/ui/api/me")]);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"role\":\"viewer\""), "{body}");
        let (code, body) = curl(&[
            "-X",
            "POST",
            "-H",
            &bearer(&viewer),
            &url("/ui/api/units/a.service/start"),
        ]);
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("role viewer may not"), "{body}");
        // The same for fleet's HTTP API v1.
        let (code, _) = curl(&[
            "-X",
            "DELETE",
            "-H",
            &bearer(&viewer),
            &url("/fleet/v1/units/a.service"),
        ]);
        assert_eq!(code, 403);
        let (code, body) = curl(&["-H", &bearer("fleet_forged"), &url("/fleet/v1/units")]);
        assert_eq!(code, 401, "{body}");

        // Login: JSON only; sets an HttpOnly cookie that then works alone.
        let (code, _) = curl(&["-d", &format!("token={operator}"), &url("/ui/login")]);
        assert_eq!(code, 415);
        let jar = jar_path;
        let jar = jar.to_str().unwrap();
        let login = format!("{{\"token\":\"{operator}\"}}");
        let (code, body) = curl(&[
            "-c",
            jar,
            "-H",
            "Content-Type: application/json",
            "-d",
            &login,
            &url("/ui/login"),
        ]);
        assert_eq!(code, 200, "{body}");
        let cookies = std::fs::read_to_string(jar).unwrap();
        assert!(cookies.contains("#HttpOnly_") && cookies.contains("fleet_token"));
        let (code, body) = curl(&["-b", jar, &url("/ui/api/me")]);
        assert_eq!(code, 200);
        assert!(body.contains("\"can_act\":true"), "{body}");

        // Metrics: Prometheus text, counting these very calls.
        let (code, text) = curl(&["-H", &bearer(&viewer), &url("/metrics")]);
        assert_eq!(code, 200);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("Prometheus text");
        let refused = scrape.samples.iter().any(|s| {
            s.metric == "fleet_api_calls_total"
                && s.labels.get("method") == Some("POST /ui/api/units/:name/start")
                && s.labels.get("code") == Some("403")
        });
        assert!(refused, "{text}");
        assert!(text.contains("fleet_etcd_request_seconds_count{op=\"read token\"}"));
        (jar.to_string(), op_info.id)
    })
    .await
    .unwrap();
    let (jar, id) = done;
    // Revoked: the cookie stops working at once.
    assert_eq!(reg.revoke_token(&id).await.unwrap(), 1);
    let code = tokio::task::spawn_blocking(move || curl(&["-b", &jar, &url2("/ui/api/me")]).0)
        .await
        .unwrap();
    assert_eq!(code, 401);
    drop(dir);
    stop.cancel();
}

/// The console's actions obey the rules of the same gRPC calls: an operator token
/// changes units of namespace `default` only (the page shows it no buttons elsewhere,
/// and a forged request is refused); an admin token changes any. The cluster view names
/// each unit's namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_keep_namespace_rules() {
    use fleet_core::{Namespace, Selector, UnitFile, UnitName};
    let (_etcd, reg) = etcd_and_registry().await;
    let team = Namespace::parse("team").unwrap();
    reg.create_namespace(&team, &Selector::default())
        .await
        .unwrap();
    let file = UnitFile::parse("[Service]\nExecStart=/bin/sleep infinity\n").unwrap();
    for n in ["web.service", "team:web.service"] {
        reg.create_unit(&UnitName::parse(n).unwrap(), &file)
            .await
            .unwrap();
    }
    let (base, stop) = serve(&reg, None);
    let (operator, _) = reg
        .create_token("o", "operator", Duration::from_secs(600))
        .await
        .unwrap();
    let (admin, _) = reg
        .create_token("a", "admin", Duration::from_secs(600))
        .await
        .unwrap();

    let target = |n: &str| {
        let reg = reg.clone();
        let n = UnitName::parse(n).unwrap();
        async move { reg.get_unit(&n).await.unwrap().unwrap().target.to_string() }
    };
    let b = base.clone();
    let (o, a) = (operator.clone(), admin.clone());
    tokio::task::spawn_blocking(move || {
        let get = |t: &str, p: &str| {
            curl(&[
                "-H",
                &format!("Authorization: Bearer {t}"),
                &format!("{b}{p}"),
            ])
        };
        let post = |t: &str, p: &str| {
            curl(&[
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {t}"),
                &format!("{b}{p}"),
            ])
        };
        // The view names namespaces (once fleetd's view of people has seen team).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (code, body) = get(&o, "/ui/api/cluster");
            assert_eq!(code, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["namespaces"] == serde_json::json!(["default", "team"]) {
                let unit = v["units"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|u| u["name"] == "team:web.service")
                    .cloned()
                    .expect("team:web.service in the view");
                assert_eq!(unit["namespace"], "team");
                assert_eq!(unit["local"], "web.service");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "namespace team not in {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (_, me) = get(&o, "/ui/api/me");
        assert!(me.contains("\"all_namespaces\":false"), "{me}");
        let (_, me) = get(&a, "/ui/api/me");
        assert!(me.contains("\"all_namespaces\":true"), "{me}");

        let (code, body) = post(&o, "/ui/api/units/team:web.service/start");
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("namespace team"), "{body}");
        let (code, body) = post(&o, "/ui/api/units/team:web.service/destroy");
        assert_eq!(code, 403, "{body}");
        let (code, body) = post(&o, "/ui/api/units/web.service/start");
        assert_eq!(code, 204, "{body}");
        let (code, body) = post(&a, "/ui/api/units/team:web.service/start");
        assert_eq!(code, 204, "{body}");
        let (code, body) = post(&o, "/ui/api/units/web.service/unload");
        assert_eq!(code, 204, "{body}");
        let (code, body) = post(&o, "/ui/api/units/web.service/destroy");
        assert_eq!(code, 204, "{body}");
        let (code, body) = get(&o, "/ui/api/units/web.service");
        assert_eq!(code, 404, "{body}");
    })
    .await
    .unwrap();
    assert_eq!(target("team:web.service").await, "launched");
    stop.cancel();
}

/// The page loads nothing from elsewhere: its assets name no other origin, and the
/// Content-Security-Policy lets the browser fetch from fleetd only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_assets_are_embedded() {
    let (_etcd, reg) = etcd_and_registry().await;
    let (base, stop) = serve(&reg, None);
    tokio::task::spawn_blocking(move || {
        for path in ["/ui/", "/ui/app.js", "/ui/style.css"] {
            let (code, text) = curl(&["-i", &format!("{base}{path}")]);
            assert_eq!(code, 200, "{path}");
            let (head, body) = text.split_once("\r\n\r\n").expect("headers");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-security-policy: default-src 'self'"),
                "{path}: {head}"
            );
            assert!(body.len() > 100, "{path} is empty");
            for other in ["http://", "https://", "//cdn", "@import"] {
                assert!(!body.contains(other), "{path} refers to {other}");
            }
        }
    })
    .await
    .unwrap();
    stop.cancel();
}

/// The console's cluster view: a global unit (never scheduled) is shown on each machine
/// that reports it, counted there by state, and is not taken for an unplaced unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_view_shows_global_units_per_machine() {
    use fleet_core::{Machine, SystemdState, TargetState, UnitFile, UnitName};
    use fleet_registry::UnitStateRecord;
    let (_etcd, reg) = etcd_and_registry().await;
    let global = UnitName::parse("every.service").unwrap();
    let file =
        UnitFile::parse("[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nGlobal=true\n")
            .unwrap();
    reg.create_unit(&global, &file).await.unwrap();
    let mut agents = Vec::new();
    for id in ["m1", "m2"] {
        let m = Machine::new(MachineId::new(id).unwrap());
        let (agent, keep) = reg
            .register_agent(&m, "", Duration::from_secs(30), &[])
            .await
            .unwrap();
        agent
            .put_states(&[UnitStateRecord {
                unit: global.clone(),
                machine: m.id.clone(),
                hash: file.hash(),
                state: TargetState::Launched,
                systemd: SystemdState {
                    load: "loaded".into(),
                    active: "active".into(),
                    sub: "running".into(),
                },
            }])
            .await
            .unwrap();
        agents.push((agent, keep));
    }
    let (base, stop) = serve(&reg, None);
    let (viewer, _) = reg
        .create_token("v", "viewer", Duration::from_secs(600))
        .await
        .unwrap();
    let (code, body) = tokio::task::spawn_blocking(move || {
        curl(&[
            "-H",
            &format!("Authorization: Bearer {viewer}"),
            &format!("{base}/ui/api/cluster"),
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows: Vec<_> = v["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["name"] == "every.service")
        .collect();
    let on: Vec<_> = rows
        .iter()
        .map(|u| u["machine"].as_str().unwrap())
        .collect();
    assert_eq!(on, ["m1", "m2"], "{body}");
    for u in &rows {
        assert_eq!(u["global"], true);
        assert_eq!(u["active"], "active");
    }
    for m in v["machines"].as_array().unwrap() {
        assert_eq!(m["units"]["active"], 1, "{m}");
    }
    drop(agents);
    stop.cancel();
}

/// A revoked token also loses the live view it had open: the stream ends with an `end`
/// event (the page then shows the login) instead of serving it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_ends_its_live_view() {
    use std::io::Read;
    let (_etcd, reg) = etcd_and_registry().await;
    let (base, stop) = serve(&reg, None);
    let (viewer, info) = reg
        .create_token("v", "viewer", Duration::from_secs(600))
        .await
        .unwrap();
    let mut curl = std::process::Command::new("curl")
        .args(["-sSN", "--max-time", "30", "-H"])
        .arg(format!("Authorization: Bearer {viewer}"))
        .arg("--")
        .arg(format!("{base}/ui/api/events"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut out = curl.stdout.take().unwrap();
    // The first view, then the revocation.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: cluster") {
        let n = tokio::task::block_in_place(|| out.read(&mut buf)).unwrap();
        assert!(n > 0, "the stream ended before its first view");
        seen.extend_from_slice(&buf[..n]);
    }
    let t0 = std::time::Instant::now();
    assert_eq!(reg.revoke_token(&info.id).await.unwrap(), 1);
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        rest
    })
    .await
    .unwrap();
    let _ = curl.wait();
    assert!(
        rest.contains("event: end") && rest.contains("log in again"),
        "{rest}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the stream outlived its token by {:?}",
        t0.elapsed()
    );
    stop.cancel();
}
