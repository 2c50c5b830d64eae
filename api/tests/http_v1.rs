//! fleet's JSON HTTP API v1 beside gRPC, in-process against a real etcd: the same
//! listeners (unix socket and TCP) answer curl-style HTTP/1.1 requests with fleet's
//! paths, entities, status codes and error bodies, and fleetctl's gRPC still works.
//! What engine and agents would write (schedule, states) is written here directly;
//! the lab test drives real fleetds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_api::{ApiClient, ApiContext, ClientConfig, ListenConfig, Listeners, serve_on};
use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitName};
use fleet_registry::{
    AgentRegistry, LeaseKeepAlive, Registry, RegistryConfig, ScheduleEntry, SchedulePlan,
    UnitStateRecord,
};
use fleet_testkit::EtcdServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const HELLO: &str = "[Unit]\nDescription=hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";

/// Where a request goes: the unix socket or the TCP listener of the same fleetd.
#[derive(Clone, Debug)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// A response as a test looks at it.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    server: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts fleet's error answer: the status, JSON content type and
    /// `{"error":{"code":<status>,"message":…}}` whose message contains `want`.
    fn assert_error(&self, status: u16, want: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/json", "{self:?}");
        let body = self.json();
        assert_eq!(body["error"]["code"], status, "{self:?}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{message:?} lacks {want:?}");
    }
}

/// One HTTP/1.1 request on a fresh connection, as `curl [--unix-socket]` makes it.
async fn call(
    ep: &Endpoint,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Reply {
    let (mut sender, conn) = match ep {
        Endpoint::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p).await.unwrap();
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            (sender, tokio::spawn(async move { conn.await.ok() }))
        }
        Endpoint::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a).await.unwrap();
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            (sender, tokio::spawn(async move { conn.await.ok() }))
        }
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (status, content_type, server) = (
        resp.status().as_u16(),
        header("content-type"),
        header("server"),
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    conn.abort();
    Reply {
        status,
        content_type,
        server,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(ep: &Endpoint, path: &str) -> Reply {
    call(ep, "GET", path, None, "").await
}

async fn put(ep: &Endpoint, path: &str, body: Value) -> Reply {
    call(ep, "PUT", path, Some("application/json"), &body.to_string()).await
}

/// One fleetd's API (gRPC and HTTP) on a unix socket and a TCP port.
struct Fleetd {
    stop: CancellationToken,
    unix: Endpoint,
    tcp: Endpoint,
    socket: PathBuf,
    registered: tokio::sync::watch::Sender<bool>,
}

impl Drop for Fleetd {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn registry(etcd: &EtcdServer) -> Registry {
    Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap()
}

async fn fleetd(etcd: &EtcdServer, dir: &Path) -> Fleetd {
    let mut ctx = ApiContext::new(registry(etcd).await, MachineId::new("m1").unwrap());
    let (registered, rx) = tokio::sync::watch::channel(true);
    ctx.registered = Some(rx);
    let socket = dir.join("fleet.sock");
    let listeners = Listeners::open(&ListenConfig {
        unix: Some(socket.clone()),
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        tls: None,
        socket_activation: false,
        auth: Default::default(),
    })
    .unwrap();
    let tcp = listeners.tcp_addrs()[0];
    let stop = CancellationToken::new();
    tokio::spawn(serve_on(listeners, ctx, stop.clone()));
    Fleetd {
        stop,
        unix: Endpoint::Unix(socket.clone()),
        tcp: Endpoint::Tcp(tcp),
        socket,
        registered,
    }
}

/// Publishes machine `id` with configured metadata, as its agent would.
async fn register(
    reg: &Registry,
    id: &str,
    metadata: &[(&str, &str)],
) -> (AgentRegistry, LeaseKeepAlive) {
    let mut m = Machine::new(MachineId::new(id).unwrap());
    m.public_ip = Some(std::net::IpAddr::from([10, 0, 0, id.len() as u8]));
    m.metadata = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    reg.register_agent(&m, "", Duration::from_secs(30), &[])
        .await
        .unwrap()
}

/// What engine and agent do once `unit` is launched: place it on `machine` and
/// report it running there.
async fn run_on(reg: &Registry, unit: &str, agent: &AgentRegistry) {
    let file = UnitFile::parse(HELLO).unwrap();
    let unit = UnitName::parse(unit).unwrap();
    let machine = agent.machine().clone();
    let plan = SchedulePlan {
        place: vec![ScheduleEntry {
            machine: machine.clone(),
            unit: unit.clone(),
            hash: file.hash(),
            target: TargetState::Launched,
            text: None,
        }],
        ..Default::default()
    };
    // The engine's part, under a leadership of its own.
    let lease = reg.grant_lease(Duration::from_secs(30)).await.unwrap();
    let engine = reg.campaign("test-engine", lease).await.unwrap();
    engine.apply(&plan).await.unwrap();
    engine.resign().await.unwrap();
    let state = UnitStateRecord {
        unit,
        machine,
        hash: file.hash(),
        state: TargetState::Launched,
        systemd: SystemdState {
            load: "loaded".into(),
            active: "active".into(),
            sub: "running".into(),
        },
    };
    agent.put_states(&[state]).await.unwrap();
}

/// The unit's options as the API wants them (parsed from unit text, as a client does).
fn options(text: &str) -> Value {
    let file = UnitFile::parse(text).unwrap();
    Value::Array(
        file.options()
            .iter()
            .map(|o| json!({"section": o.section, "name": o.name, "value": o.value}))
            .collect(),
    )
}

/// Create launched, see it active in `/state`, change it to inactive, delete it —
/// over the unix socket and over TCP, with every status code fleet answers.
#[tokio::test]
async fn unit_lifecycle_over_unix_socket_and_tcp() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path()).await;
    let reg = registry(&etcd).await;
    let (m1, _keep) = register(&reg, "m1", &[]).await;
    for (ep, unit) in [
        (&f.unix, "hello-unix.service"),
        (&f.tcp, "hello-tcp.service"),
    ] {
        let path = format!("/fleet/v1/units/{unit}");
        // Absent and no options: 409.
        put(ep, &path, json!({"desiredState": "launched"}))
            .await
            .assert_error(409, "unit does not exist and options field empty");
        // Created launched: 201, empty body, JSON content type, fleetd's Server header.
        let created = put(
            ep,
            &path,
            json!({"name": unit, "desiredState": "launched", "options": options(HELLO)}),
        )
        .await;
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.body, "");
        assert_eq!(created.content_type, "application/json");
        assert!(created.server.starts_with("fleetd/"), "{created:?}");
        let got = get(ep, &path).await;
        assert_eq!(got.status, 200, "{got:?}");
        let u = got.json();
        assert_eq!(u["name"], unit);
        assert_eq!(u["desiredState"], "launched");
        assert_eq!(u["currentState"], "inactive");
        assert!(u.get("machineID").is_none(), "not scheduled yet: {u}");
        assert_eq!(u["options"], options(HELLO));
        // Engine and agent run it; /state shows it active, the unit its machine.
        run_on(&reg, unit, &m1).await;
        let states = get(ep, &format!("/fleet/v1/state?unitName={unit}")).await;
        assert_eq!(states.status, 200, "{states:?}");
        let states = states.json();
        assert_eq!(states["states"].as_array().unwrap().len(), 1, "{states}");
        let s = &states["states"][0];
        assert_eq!(s["name"], unit);
        assert_eq!(s["machineID"], "m1");
        assert_eq!(s["systemdActiveState"], "active");
        assert_eq!(s["systemdLoadState"], "loaded");
        assert_eq!(s["systemdSubState"], "running");
        assert_eq!(
            s["hash"],
            UnitFile::parse(HELLO).unwrap().hash().to_string()
        );
        let u = get(ep, &path).await.json();
        assert_eq!(
            (&u["currentState"], &u["machineID"]),
            (&json!("launched"), &json!("m1"))
        );
        // Desired state changes: 204; the same options count as no options.
        let stop = put(ep, &path, json!({"desiredState": "inactive"})).await;
        assert_eq!(stop.status, 204, "{stop:?}");
        assert_eq!(get(ep, &path).await.json()["desiredState"], "inactive");
        let same = put(
            ep,
            &path,
            json!({"desiredState": "loaded", "options": options(HELLO)}),
        )
        .await;
        assert_eq!(same.status, 204, "{same:?}");
        put(ep, &path, json!({}))
            .await
            .assert_error(409, "must provide DesiredState to update existing unit");
        // Delete: 204, then 404 for every verb.
        assert_eq!(call(ep, "DELETE", &path, None, "").await.status, 204);
        call(ep, "DELETE", &path, None, "")
            .await
            .assert_error(404, "unit does not exist");
        get(ep, &path)
            .await
            .assert_error(404, "unit does not exist");
        put(ep, &path, json!({"desiredState": "launched"}))
            .await
            .assert_error(409, "options field empty");
    }
}

/// A unit created over HTTP obeys the same rules as fleetctl's gRPC path, and bad
/// requests get 4xx with a message, changing nothing.
#[tokio::test]
async fn validation_matches_every_other_path() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path()).await;
    let ep = &f.unix;
    let create = |name: &str, text: &str| json!({"name": name, "desiredState": "launched", "options": options(text)});
    put(ep, "/fleet/v1/units/bad%25name.service", create("", HELLO))
        .await
        .assert_error(400, "unit name");
    put(ep, "/fleet/v1/units/nosuffix", create("", HELLO))
        .await
        .assert_error(400, "unit name");
    let long = format!("/fleet/v1/units/{}.service", "a".repeat(300));
    put(ep, &long, create("", HELLO))
        .await
        .assert_error(400, "unit name");
    let xfleet = format!("{HELLO}\n[X-Fleet]\nGlobal=true\nMachineOf=other.service\n");
    put(
        ep,
        "/fleet/v1/units/x.service",
        create("x.service", &xfleet),
    )
    .await
    .assert_error(400, "Global cannot be used with Peers");
    put(
        ep,
        "/fleet/v1/units/t@.service",
        create("t@.service", HELLO),
    )
    .await
    .assert_error(400, "cannot activate template \"t@.service\"");
    put(ep, "/fleet/v1/units/a.service", create("b.service", HELLO))
        .await
        .assert_error(400, "differs from unit name in request body");
    put(
        ep,
        "/fleet/v1/units/a.service",
        json!({"desiredState": "running", "options": options(HELLO)}),
    )
    .await
    .assert_error(400, "invalid desiredState");
    let long_value = format!("/bin/echo {}", "x".repeat(70_000));
    let long =
        json!({"options": [{"section": "Service", "name": "ExecStart", "value": long_value}]});
    put(ep, "/fleet/v1/units/long.service", long)
        .await
        .assert_error(400, "unit file");
    call(
        ep,
        "PUT",
        "/fleet/v1/units/a.service",
        Some("application/json"),
        "{not json",
    )
    .await
    .assert_error(400, "unable to decode body");
    call(
        ep,
        "PUT",
        "/fleet/v1/units/a.service",
        Some("text/plain"),
        "{}",
    )
    .await
    .assert_error(415, "only acceptable Content-Type is application/json");
    call(ep, "PUT", "/fleet/v1/units/a.service", None, "{}")
        .await
        .assert_error(415, "expected 1 Content-Type, got 0");
    // A newline in a value would smuggle an [X-Fleet] option past the checks.
    let smuggled = json!({"desiredState": "launched", "options": [
        {"section": "Service", "name": "ExecStart", "value": "/bin/true"},
        {"section": "X-Fleet", "name": "Conflicts", "value": "x.service\nGlobal=true"},
    ]});
    put(ep, "/fleet/v1/units/smuggled.service", smuggled)
        .await
        .assert_error(400, "would not read back");
    // Nothing of the above was written.
    let units = get(ep, "/fleet/v1/units").await;
    assert_eq!((units.status, units.body.as_str()), (200, "{}"));
    // A template may be submitted inactive, and its options replaced (201 again).
    let t = json!({"desiredState": "inactive", "options": options(HELLO)});
    assert_eq!(put(ep, "/fleet/v1/units/t@.service", t).await.status, 201);
    let other = format!("{HELLO}Restart=always\n");
    let t2 = json!({"options": options(&other)});
    assert_eq!(put(ep, "/fleet/v1/units/t@.service", t2).await.status, 201);
    let got = get(ep, "/fleet/v1/units/t@.service").await.json();
    assert_eq!(got["options"], options(&other));
    assert_eq!(got["desiredState"], "inactive");
}

/// fleet's routing: exact paths, 404/405 with fleet's texts, the discovery document,
/// page token errors, 503 while unregistered; gRPC still answers on the same socket.
#[tokio::test]
async fn routing_discovery_and_grpc_on_the_same_socket() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path()).await;
    let reg = registry(&etcd).await;
    let _m1 = register(&reg, "m1", &[]).await;
    let ep = &f.tcp;
    get(ep, "/fleet/v1/units/").await.assert_error(404, "");
    get(ep, "/fleet/v1/units/a.service/x")
        .await
        .assert_error(404, "");
    get(ep, "/fleet/v1/nothing").await.assert_error(404, "");
    call(ep, "POST", "/fleet/v1/units", None, "")
        .await
        .assert_error(405, "only GET supported against this resource");
    call(ep, "POST", "/fleet/v1/units/a.service", None, "")
        .await
        .assert_error(
            405,
            "only GET, PUT and DELETE supported against this resource",
        );
    call(ep, "DELETE", "/fleet/v1/machines", None, "")
        .await
        .assert_error(405, "only GET and PATCH supported against this resource");
    call(ep, "POST", "/fleet/v1/discovery", None, "")
        .await
        .assert_error(400, "only HTTP GET supported against this resource");
    get(ep, "/fleet/v1/machines?nextPageToken=EwBMLg==")
        .await
        .assert_error(400, "token limit must be 100");
    get(
        ep,
        "/fleet/v1/state?nextPageToken=ZAACAA==&nextPageToken=ZAACAA==",
    )
    .await
    .assert_error(400, "too many values for page token");
    get(ep, "/fleet/v1/state/nothing.service")
        .await
        .assert_error(404, "unit state does not exist");
    let doc = get(ep, "/fleet/v1/discovery").await;
    assert_eq!(
        (doc.status, doc.content_type.as_str()),
        (200, "application/json")
    );
    assert_eq!(doc.json()["baseUrl"], "$ENDPOINT/fleet/v1/");
    // The legacy prefix is the same API.
    let machines = get(ep, "/v1-alpha/machines").await.json();
    assert_eq!(machines["machines"][0]["id"], "m1");
    // gRPC (fleetctl's driver) on the very socket that answered HTTP/1.1.
    let grpc = ApiClient::connect(&ClientConfig::new(format!("unix://{}", f.socket.display())))
        .await
        .unwrap();
    assert_eq!(grpc.list_machines().await.unwrap().len(), 1);
    // Not registered: every request is fleet's 503.
    f.registered.send_replace(false);
    get(&f.unix, "/fleet/v1/units")
        .await
        .assert_error(503, "fleet server unable to communicate with etcd");
}

/// A client written from fleet's api-v1 document only: GET the units page by page,
/// following `nextPageToken` until there is none.
#[tokio::test]
async fn a_client_from_the_api_document_lists_1000_units_across_pages() {
    #[derive(serde::Deserialize)]
    struct UnitOption {
        section: String,
        name: String,
        value: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Unit {
        name: String,
        options: Vec<UnitOption>,
        desired_state: String,
        current_state: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct UnitPage {
        #[serde(default)]
        units: Vec<Unit>,
        next_page_token: Option<String>,
    }
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path()).await;
    let reg = registry(&etcd).await;
    let file = UnitFile::parse(HELLO).unwrap();
    let units: Vec<_> = (0..1000)
        .map(|i| {
            (
                UnitName::parse(&format!("u{i:04}.service")).unwrap(),
                file.clone(),
            )
        })
        .collect();
    reg.create_units(&units).await.unwrap();
    let (mut seen, mut pages, mut token) = (Vec::new(), 0, None::<String>);
    loop {
        let path = match &token {
            Some(t) => format!("/fleet/v1/units?nextPageToken={t}"),
            None => "/fleet/v1/units".to_string(),
        };
        let reply = get(&f.tcp, &path).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let page: UnitPage = serde_json::from_str(&reply.body).unwrap();
        pages += 1;
        assert!(page.units.len() <= 100);
        for u in page.units {
            assert_eq!(
                (u.desired_state.as_str(), u.current_state.as_str()),
                ("inactive", "inactive")
            );
            assert_eq!(u.options.len(), 2, "{}", u.name);
            assert!(
                u.options
                    .iter()
                    .all(|o| !o.section.is_empty() && !o.name.is_empty() && !o.value.is_empty())
            );
            seen.push(u.name);
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let want: Vec<String> = units.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(seen, want, "every unit once, in name order");
    // Ten full pages, then the empty page fleet announces after a full last page.
    assert_eq!(pages, 11);
}

/// PATCH of dynamic metadata: add/replace/remove, merged over the configured
/// metadata (a removal hides a configured key), kept while the machine is away.
#[tokio::test]
async fn machine_metadata_patch_persists_across_leaving_and_rejoining() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path()).await;
    let reg = registry(&etcd).await;
    let (m1, _keep1) = register(&reg, "m1", &[("hostname", "one"), ("region", "eu")]).await;
    let _m2 = register(&reg, "m2", &[("hostname", "two")]).await;
    let ep = &f.unix;
    let patch = |body: Value| async move {
        call(
            ep,
            "PATCH",
            "/fleet/v1/machines",
            Some("application/json"),
            &body.to_string(),
        )
        .await
    };
    let ok = patch(json!([
        {"op": "add", "path": "/m1/metadata/disk", "Value": {"value": "ssd"}},
        {"op": "replace", "path": "/m2/metadata/ping", "value": {"value": "splat"}},
        {"op": "remove", "path": "/m1/metadata/region", "value": {"value": ""}},
    ]))
    .await;
    assert_eq!(
        (ok.status, ok.content_type.as_str()),
        (204, "application/json"),
        "{ok:?}"
    );
    let metadata = || async {
        let page = get(ep, "/fleet/v1/machines").await.json();
        page["machines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_str().unwrap().to_string(), m["metadata"].clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let m = metadata().await;
    assert_eq!(m["m1"], json!({"disk": "ssd", "hostname": "one"}));
    assert_eq!(m["m2"], json!({"hostname": "two", "ping": "splat"}));
    let page = get(ep, "/fleet/v1/machines").await.json();
    assert_eq!(page["machines"][0]["primaryIP"], "10.0.0.2");
    // Bad operations: 400 with fleet's messages, and none of the batch applied.
    patch(json!([
        {"op": "add", "path": "/m1/metadata/x", "value": {"value": "1"}},
        {"op": "noop", "path": "/m1/metadata/y"},
    ]))
    .await
    .assert_error(400, "invalid op: expect add, remove, or replace");
    patch(json!([{"op": "add", "path": "/m1/foo", "value": {"value": "1"}}]))
        .await
        .assert_error(400, "machine metadata path invalid");
    patch(json!([{"op": "add", "path": "/m1/metadata/x", "value": {"value": ""}}]))
        .await
        .assert_error(400, "invalid value: add and replace require a value");
    patch(json!({"op": "add"}))
        .await
        .assert_error(400, "unable to decode body");
    assert!(metadata().await["m1"].get("x").is_none());
    // m1 leaves (its lease ends) and rejoins: the dynamic metadata is still there.
    m1.revoke().await.unwrap();
    assert!(!metadata().await.contains_key("m1"));
    let _m1 = register(&reg, "m1", &[("hostname", "one"), ("region", "eu")]).await;
    assert_eq!(
        metadata().await["m1"],
        json!({"disk": "ssd", "hostname": "one"})
    );
    // The engine plans from the snapshot, which carries the same merged metadata.
    let snap = reg.placement_snapshot().await.unwrap();
    assert_eq!(
        snap.machines[0]
            .machine
            .metadata
            .get("disk")
            .map(String::as_str),
        Some("ssd")
    );
    assert!(!snap.machines[0].machine.metadata.contains_key("region"));
}

/// `curl ARGS URL` on the host: (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Over TLS (with mTLS), the HTTP API answers HTTP/1.1 clients (which offer only
/// `http/1.1` in ALPN) and HTTP/2 clients alike; clients without a certificate the
/// CA signed are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_mtls_serves_http1_and_http2_clients() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    let reg = registry(&etcd).await;
    let _m1 = register(&reg, "m1", &[]).await;
    let ctx = ApiContext::new(registry(&etcd).await, MachineId::new("m1").unwrap());
    let listeners = Listeners::open(&ListenConfig {
        unix: None,
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(fleet_api::ServerTls {
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            client_ca: Some(d.join("ca.crt")),
        }),
        socket_activation: false,
        auth: Default::default(),
    })
    .unwrap();
    let url = format!("https://{}/fleet/v1/machines", listeners.tcp_addrs()[0]);
    let stop = CancellationToken::new();
    tokio::spawn(serve_on(listeners, ctx, stop.clone()));
    let ca = d.join("ca.crt").display().to_string();
    let cert = d.join("client.crt").display().to_string();
    let key = d.join("client.key").display().to_string();
    for version in ["--http1.1", "--http2"] {
        let args = [
            version, "--cacert", &ca, "--cert", &cert, "--key", &key, &url,
        ];
        let (code, out) = tokio::task::block_in_place(|| curl(&args));
        assert_eq!(code, 0, "curl {version}: {out}");
        let page: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(page["machines"][0]["id"], "m1", "{version}");
    }
    // Without a certificate: told why, in fleet's JSON error shape.
    let (code, out) = tokio::task::block_in_place(|| {
        curl(&["--http1.1", "-w", "\n%{http_code}", "--cacert", &ca, &url])
    });
    assert_eq!(code, 0, "{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "401", "{out}");
    let err: Value = serde_json::from_str(body).unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("certificate required"), "{message}");
    // A certificate the CA did not sign: refused, and told so.
    let (rogue, rogue_key) = (
        d.join("rogue.crt").display().to_string(),
        d.join("rogue.key").display().to_string(),
    );
    let (code, out) = tokio::task::block_in_place(|| {
        curl(&[
            "-w",
            "\n%{http_code}",
            "--cacert",
            &ca,
            "--cert",
            &rogue,
            "--key",
            &rogue_key,
            &url,
        ])
    });
    assert_eq!(code, 0, "{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "401", "{out}");
    assert!(body.contains("client certificate refused"), "{body}");
    stop.cancel();
}

/// HTTP API v1 over mTLS: a viewer certificate reads but may not submit, start or
/// destroy; an operator may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_roles_from_certificates() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    let ctx = ApiContext::new(registry(&etcd).await, MachineId::new("m1").unwrap());
    let listeners = Listeners::open(&ListenConfig {
        unix: None,
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(fleet_api::ServerTls {
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            client_ca: Some(d.join("ca.crt")),
        }),
        socket_activation: false,
        auth: Default::default(),
    })
    .unwrap();
    let base = format!("https://{}/fleet/v1/units", listeners.tcp_addrs()[0]);
    let stop = CancellationToken::new();
    tokio::spawn(serve_on(listeners, ctx, stop.clone()));
    let ca = d.join("ca.crt").display().to_string();
    // (status code, body) of `method url [json]` as `who`.
    let call = |who: &str, method: &str, url: &str, json: Option<&str>| {
        let cert = d.join(format!("{who}.crt")).display().to_string();
        let key = d.join(format!("{who}.key")).display().to_string();
        let mut args = vec![
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ];
        if let Some(j) = json {
            args.extend(["-H", "Content-Type: application/json", "--data", j]);
        }
        args.push(url);
        let (code, out) = tokio::task::block_in_place(|| curl(&args));
        assert_eq!(code, 0, "{out}");
        let (body, status) = out.rsplit_once('\n').unwrap();
        (status.to_string(), body.to_string())
    };
    let unit = format!("{base}/hello.service");
    let submit = r#"{"desiredState":"inactive","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep 1000"}]}"#;
    let (status, body) = call("viewer", "PUT", &unit, Some(submit));
    assert_eq!(status, "403", "{body}");
    assert!(
        body.contains("role viewer may not submit, start or stop units"),
        "{body}"
    );
    let (status, body) = call("operator", "PUT", &unit, Some(submit));
    assert_eq!(status, "201", "{body}");
    let (status, body) = call("viewer", "GET", &base, None);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("hello.service"), "{body}");
    let (status, body) = call(
        "viewer",
        "PUT",
        &unit,
        Some(r#"{"desiredState":"launched"}"#),
    );
    assert_eq!(status, "403", "{body}");
    let (status, body) = call("viewer", "DELETE", &unit, None);
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("role viewer may not destroy units"), "{body}");
    let (status, body) = call(
        "operator",
        "PUT",
        &unit,
        Some(r#"{"desiredState":"launched"}"#),
    );
    assert_eq!(status, "204", "{body}");
    let (status, body) = call("operator", "DELETE", &unit, None);
    assert_eq!(status, "204", "{body}");
    stop.cancel();
}

/// HTTP API v1 is fleet's, so it serves the default namespace only: other namespaces'
/// units are neither listed nor reachable by their stored names.
#[tokio::test]
async fn v1_serves_the_default_namespace_only() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path()).await;
    let reg = registry(&etcd).await;
    let a = fleet_core::Namespace::parse("a").unwrap();
    reg.create_namespace(&a, &Default::default()).await.unwrap();
    let file = UnitFile::parse(HELLO).unwrap();
    let web = UnitName::parse("web.service").unwrap();
    reg.create_unit(&web, &file).await.unwrap();
    reg.create_unit(&a.qualify(&web).unwrap(), &file)
        .await
        .unwrap();
    // The API follows namespaces by watch: wait (bounded) until it has seen `a`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(&f.unix, "/fleet/v1/units/a:web.service").await.status != 403 {
        assert!(
            std::time::Instant::now() < deadline,
            "the API never learnt of namespace a"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let listed = get(&f.unix, "/fleet/v1/units").await.json();
    let names: Vec<&str> = listed["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web.service"]);
    get(&f.unix, "/fleet/v1/units/a:web.service")
        .await
        .assert_error(403, "belongs to namespace a");
    put(
        &f.unix,
        "/fleet/v1/units/a:web.service",
        json!({"desiredState": "launched"}),
    )
    .await
    .assert_error(403, "serves the default namespace only");
    call(&f.unix, "DELETE", "/fleet/v1/units/a:web.service", None, "")
        .await
        .assert_error(403, "belongs to namespace a");
    assert!(
        reg.get_unit(&a.qualify(&web).unwrap())
            .await
            .unwrap()
            .is_some()
    );
    // A default unit whose name merely holds ':' is served as before.
    get(&f.unix, "/fleet/v1/units/b:x.service")
        .await
        .assert_error(404, "unit does not exist");
}
