//! The API server in-process against a real etcd: every operation over a unix socket,
//! journal/status answered locally and forwarded between two fleetds, and mTLS on TCP.
//! journalctl/systemctl are small scripts here (the lab tests use real systemd).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_api::client::OutputPiece;
use fleet_api::{
    ApiClient, ApiContext, ClientConfig, ClientTls, ListenConfig, Listeners, LocalCommands,
    ServerTls, StateChange, serve_on,
};
use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitName};
use fleet_registry::{
    CreateOutcome, Registry, RegistryConfig, ScheduleEntry, SchedulePlan, UnitStateRecord,
};
use fleet_testkit::EtcdServer;
use tokio_util::sync::CancellationToken;

const UNIT: &str = "[Unit]\nDescription=hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";
const GLOBAL: &str = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n";

fn name(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

fn mid(s: &str) -> MachineId {
    MachineId::new(s).unwrap()
}

/// One fleetd's API server; stopped (and its socket removed) on drop.
struct Fleetd {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), fleet_api::ApiError>>>,
    socket: PathBuf,
    tcp: Option<std::net::SocketAddr>,
    /// This machine's agent handle (its lease is kept alive while the value lives).
    agent: (
        fleet_registry::AgentRegistry,
        fleet_registry::LeaseKeepAlive,
    ),
}

impl Drop for Fleetd {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn script(dir: &Path, file: &str, body: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn registry(etcd: &EtcdServer) -> Registry {
    Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap()
}

/// Starts a fleetd API for `machine` whose journalctl/systemctl print who they are.
async fn fleetd(
    etcd: &EtcdServer,
    dir: &Path,
    machine: &str,
    tcp: bool,
    tls: Option<ServerTls>,
    forward_tls: Option<ClientTls>,
) -> Fleetd {
    let mdir = dir.join(machine);
    std::fs::create_dir_all(&mdir).unwrap();
    let journalctl = script(
        &mdir,
        "journalctl",
        &format!(
            "echo \"journal of {machine}: $*\"\ncase \"$*\" in *-f*) while true; do echo tick; sleep 0.1; done;; esac"
        ),
    );
    let systemctl = script(
        &mdir,
        "systemctl",
        &format!("echo \"status on {machine}: $*\"\necho oops >&2\nexit 3"),
    );
    let mut ctx = ApiContext::new(registry(etcd).await, mid(machine));
    ctx.commands = LocalCommands {
        journalctl,
        systemctl,
        user: false,
    };
    ctx.forward_tls = forward_tls;
    let socket = mdir.join("fleet.sock");
    let config = ListenConfig {
        unix: Some(socket.clone()),
        tcp: if tcp {
            vec!["127.0.0.1:0".parse().unwrap()]
        } else {
            vec![]
        },
        tls,
        socket_activation: false,
        auth: Default::default(),
    };
    let listeners = Listeners::open(&config).unwrap();
    let tcp = listeners.tcp_addrs().first().copied();
    let api_addr = listeners.api_addr(None);
    let reg = registry(etcd).await;
    let mut m = Machine::new(mid(machine));
    m.public_ip = Some("127.0.0.1".parse().unwrap());
    let agent = reg
        .register_agent(&m, &api_addr, Duration::from_secs(30), &[])
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve_on(listeners, ctx, stop.clone()));
    Fleetd {
        stop,
        task: Some(task),
        socket,
        tcp,
        agent,
    }
}

async fn unix_client(f: &Fleetd) -> ApiClient {
    ApiClient::connect(&ClientConfig::new(format!("unix://{}", f.socket.display())))
        .await
        .unwrap()
}

/// Places `unit` on `f`'s machine and reports it launched there, as engine and agent
/// would.
async fn run_on(reg: &Registry, unit: &str, f: &Fleetd) {
    let file = UnitFile::parse(UNIT).unwrap();
    let agent = &f.agent.0;
    let engine_lease = reg.grant_lease(Duration::from_secs(30)).await.unwrap();
    let engine = reg.campaign("test-engine", engine_lease).await.unwrap();
    engine
        .apply(&SchedulePlan {
            place: vec![ScheduleEntry {
                machine: agent.machine().clone(),
                unit: name(unit),
                hash: file.hash(),
                target: TargetState::Launched,
                text: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    engine.resign().await.unwrap();
    agent
        .put_states(&[UnitStateRecord {
            unit: name(unit),
            machine: agent.machine().clone(),
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
}

async fn collect(mut out: fleet_api::Output) -> (String, String, Option<i32>) {
    let (mut so, mut se, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(p) = out.next().await.unwrap() {
        match p {
            OutputPiece::Stdout(b) => so.extend(b),
            OutputPiece::Stderr(b) => se.extend(b),
            OutputPiece::Exit(c) => code = Some(c),
        }
    }
    (
        String::from_utf8(so).unwrap(),
        String::from_utf8(se).unwrap(),
        code,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_over_the_unix_socket() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path(), "m1", false, None, None).await;
    let mode = std::fs::metadata(&f.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode");
    let c = unix_client(&f).await;
    let file = UnitFile::parse(UNIT).unwrap();
    let (a, b) = (name("a.service"), name("b.service"));

    assert_eq!(c.get_unit(&a).await.unwrap(), None);
    assert_eq!(
        c.create_unit(&a, &file).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        c.create_unit(&a, &file).await.unwrap(),
        CreateOutcome::Identical
    );
    let other = UnitFile::parse("[Service]\nExecStart=/bin/false\n").unwrap();
    assert!(matches!(
        c.create_units(&[(a.clone(), other.clone()), (b.clone(), file.clone())])
            .await
            .unwrap()[..],
        [CreateOutcome::Differs { .. }, CreateOutcome::Created]
    ));
    let got = c.get_unit(&a).await.unwrap().unwrap();
    assert_eq!(
        (got.file.canonical(), got.hash),
        (file.canonical(), file.hash())
    );
    c.replace_unit(&b, &other).await.unwrap();
    let units = c.get_units(&[b.clone(), name("x.service")]).await.unwrap();
    assert_eq!(units[0].as_ref().unwrap().file, other);
    assert!(units[1].is_none());

    let outcome = c
        .set_targets(&[
            (a.clone(), TargetState::Launched),
            (name("x.service"), TargetState::Loaded),
        ])
        .await
        .unwrap();
    assert_eq!(outcome.missing, vec![name("x.service")]);
    let err = c
        .set_targets(&[(name("t@.service"), TargetState::Launched)])
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "cannot activate template \"t@.service\"");

    let snap = c.snapshot().await.unwrap();
    assert_eq!(snap.units.len(), 2);
    assert_eq!(snap.units[0].target, TargetState::Launched);
    assert_eq!(snap.machines[0].machine.id, mid("m1"));
    assert_eq!(
        c.list_machines().await.unwrap()[0].public_ip,
        Some("127.0.0.1".parse().unwrap())
    );

    // A state watch sees an agent's report made after the listing.
    let (rev, states) = c.list_states_at().await.unwrap();
    assert!(states.is_empty());
    let mut watch = c.watch_states(rev + 1).await.unwrap();
    let reg = registry(&etcd).await;
    run_on(&reg, "a.service", &f).await;
    let (_, changes) = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(&changes[..], [StateChange::Put(s)] if s.unit == a));

    assert!(c.destroy_unit(&b).await.unwrap());
    assert!(!c.destroy_unit(&b).await.unwrap());

    // Invalid input is refused with one line and changes nothing.
    let bad = UnitFile::parse("[X-Fleet]\nGlobal=true\nMachineID=x\n").unwrap();
    assert!(c.create_unit(&name("bad.service"), &bad).await.is_err());
    assert_eq!(c.get_unit(&name("bad.service")).await.unwrap(), None);
    // A newline in an option value would add an [X-Fleet] option the checks never saw,
    // once written as a file: refused, nothing stored.
    let smuggled = UnitFile::from_options(vec![
        fleet_core::unit::UnitOption {
            section: "Service".into(),
            name: "ExecStart".into(),
            value: "/bin/true".into(),
        },
        fleet_core::unit::UnitOption {
            section: "X-Fleet".into(),
            name: "Conflicts".into(),
            value: "x.service\nMachineID=0123456789abcdef".into(),
        },
    ]);
    match c.create_unit(&name("smuggled.service"), &smuggled).await {
        Err(fleet_api::ApiError::Status(s)) => {
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
            assert!(s.message().contains("would not read back"), "{s:?}");
        }
        other => panic!("smuggled options accepted: {other:?}"),
    }
    assert_eq!(c.get_unit(&name("smuggled.service")).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_and_status_run_where_the_unit_runs() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m1 = fleetd(&etcd, dir.path(), "m1", true, None, None).await;
    let m2 = fleetd(&etcd, dir.path(), "m2", true, None, None).await;
    let reg = registry(&etcd).await;
    let file = UnitFile::parse(UNIT).unwrap();
    for u in ["here.service", "there.service", "idle.service"] {
        reg.create_unit(&name(u), &file).await.unwrap();
    }
    reg.create_unit(&name("g.service"), &UnitFile::parse(GLOBAL).unwrap())
        .await
        .unwrap();
    run_on(&reg, "here.service", &m1).await;
    run_on(&reg, "there.service", &m2).await;
    let c = unix_client(&m1).await;

    let (out, _, code) = collect(
        c.journal(&name("here.service"), 5, false, "cat")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        out,
        "journal of m1: --no-pager --output=cat -n 5 --unit=here.service\n"
    );
    assert_eq!(code, Some(0));
    // Forwarded to m2 through its published address; 0 lines is journalctl's -n 0 (with
    // -f: only new entries), as in fleet.
    let (out, _, _) = collect(
        c.journal(&name("there.service"), 0, false, "")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        out,
        "journal of m2: --no-pager --output=short -n 0 --unit=there.service\n"
    );
    let (out, err, code) = collect(c.status(&name("there.service"), None).await.unwrap()).await;
    assert_eq!(out, "status on m2: status -l --no-pager -- there.service\n");
    assert_eq!((err.as_str(), code), ("oops\n", Some(3)));

    // Following: lines arrive while the command runs; dropping the stream ends it.
    let mut follow = c
        .journal(&name("there.service"), 1, true, "short")
        .await
        .unwrap();
    let mut ticks = 0;
    while ticks < 3 {
        match tokio::time::timeout(Duration::from_secs(5), follow.next()).await {
            Ok(Ok(Some(OutputPiece::Stdout(b)))) => {
                ticks += String::from_utf8_lossy(&b).matches("tick").count()
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(follow);

    let msg = |r: Result<fleet_api::Output, fleet_api::ApiError>| match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        msg(c.journal(&name("nope.service"), 1, false, "").await),
        "Unit nope.service does not exist."
    );
    assert_eq!(
        msg(c.journal(&name("idle.service"), 1, false, "").await),
        "Unit idle.service does not appear to be running."
    );
    assert_eq!(
        msg(c.status(&name("idle.service"), None).await),
        "Unit idle.service does not appear to be loaded."
    );
    assert_eq!(
        msg(c.journal(&name("g.service"), 1, false, "").await),
        "Unable to retrieve journal of global unit g.service."
    );
    assert!(msg(c.journal(&name("here.service"), 1, false, "x;rm").await).contains("output mode"));

    // The machine going away: its fleetd stops answering, the error says so.
    drop(m2);
    let e = msg(c.journal(&name("there.service"), 1, false, "").await);
    assert!(e.contains("m2"), "{e}");
    let _ = m1.tcp;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_valid_cert() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    let tls = ServerTls {
        cert: d.join("server.crt"),
        key: d.join("server.key"),
        client_ca: Some(d.join("ca.crt")),
    };
    let f = fleetd(&etcd, d, "m1", true, Some(tls), None).await;
    let endpoint = format!("https://{}", f.tcp.unwrap());
    let config = |cert: Option<&str>| {
        let mut c = ClientConfig::new(endpoint.clone());
        c.tls = Some(ClientTls {
            ca: Some(d.join("ca.crt")),
            cert: cert.map(|w| d.join(format!("{w}.crt"))),
            key: cert.map(|w| d.join(format!("{w}.key"))),
            domain: None,
        });
        c
    };
    let good = ApiClient::connect(&config(Some("client"))).await.unwrap();
    assert_eq!(good.list_machines().await.unwrap().len(), 1);
    // Without a certificate: told so, not a transport error.
    let anonymous = ApiClient::connect(&config(None)).await.unwrap();
    let err = anonymous.list_machines().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(err.to_string().starts_with("certificate required"), "{err}");
    // A certificate the CA did not sign: told so.
    let rogue = ApiClient::connect(&config(Some("rogue"))).await.unwrap();
    let err = rogue.list_machines().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(
        err.to_string().starts_with("client certificate refused"),
        "{err}"
    );
    // Every call is refused, writes too.
    let err = rogue
        .destroy_unit(&name("x.service"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("client certificate refused"), "{err}");
    // Plaintext against the TLS listener is refused too.
    let plain = ClientConfig::new(format!("http://{}", f.tcp.unwrap()));
    let refused = match ApiClient::connect(&plain).await {
        Err(_) => true,
        Ok(c) => c.list_machines().await.is_err(),
    };
    assert!(refused);
}

/// The role in a client certificate (`O=fleet:<role>`) bounds what it may do: a viewer
/// reads but may not submit, start, stop or destroy; an operator may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_roles_bound_every_call() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    let tls = ServerTls {
        cert: d.join("server.crt"),
        key: d.join("server.key"),
        client_ca: Some(d.join("ca.crt")),
    };
    let f = fleetd(&etcd, d, "m1", true, Some(tls), None).await;
    let as_role = async |who: &str| {
        let mut c = ClientConfig::new(format!("https://{}", f.tcp.unwrap()));
        c.tls = Some(ClientTls {
            ca: Some(d.join("ca.crt")),
            cert: Some(d.join(format!("{who}.crt"))),
            key: Some(d.join(format!("{who}.key"))),
            domain: None,
        });
        ApiClient::connect(&c).await
    };
    let viewer = as_role("viewer").await.unwrap();
    let operator = as_role("operator").await.unwrap();
    let hello = name("hello.service");
    let file = UnitFile::parse(UNIT).unwrap();
    let denied = |r: Result<(), fleet_api::ApiError>, what: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::PermissionDenied), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("role viewer may not {what}")),
            "{e}"
        );
        eprintln!("refused: {e}");
    };
    denied(
        viewer.create_unit(&hello, &file).await.map(drop),
        "submit units",
    );
    operator.create_unit(&hello, &file).await.unwrap();
    assert!(viewer.get_unit(&hello).await.unwrap().is_some());
    assert_eq!(viewer.list_machines().await.unwrap().len(), 1);
    let start = [(hello.clone(), TargetState::Launched)];
    denied(
        viewer.set_targets(&start).await.map(drop),
        "start, stop, load or unload units",
    );
    let stop = [(hello.clone(), TargetState::Inactive)];
    denied(
        viewer.set_targets(&stop).await.map(drop),
        "start, stop, load or unload units",
    );
    denied(viewer.destroy_unit(&hello).await.map(drop), "destroy units");
    operator.set_targets(&start).await.unwrap();
    operator.set_targets(&stop).await.unwrap();
    assert!(operator.destroy_unit(&hello).await.unwrap());
    // The unix socket's root peer (these tests run as root or as fleetd's user) is admin.
    let local = unix_client(&f).await;
    local.create_unit(&hello, &file).await.unwrap();
    assert!(local.destroy_unit(&hello).await.unwrap());
}

/// Plaintext TCP beyond loopback is refused at start-up unless the operator opts in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_tcp_needs_the_opt_in() {
    let mut config = ListenConfig {
        unix: None,
        tcp: vec!["0.0.0.0:0".parse().unwrap()],
        tls: None,
        socket_activation: false,
        auth: Default::default(),
    };
    let err = Listeners::open(&config)
        .err()
        .expect("plaintext TCP was served");
    let err = err.to_string();
    eprintln!("refused: {err}");
    assert!(
        err.contains("without TLS") && err.contains("api_allow_plaintext=true"),
        "{err}"
    );
    config.auth.allow_plaintext = true;
    assert_eq!(Listeners::open(&config).unwrap().tcp_addrs().len(), 1);
    // Loopback needs no opt-in.
    config.auth.allow_plaintext = false;
    config.tcp = vec!["127.0.0.1:0".parse().unwrap()];
    assert_eq!(Listeners::open(&config).unwrap().tcp_addrs().len(), 1);
}

/// Republishes `f`'s machine record with `api_addr`, as whoever holds that machine's
/// etcd credentials could.
async fn publish_addr(f: &Fleetd, api_addr: &str) {
    let agent = &f.agent.0;
    let mut m = Machine::new(agent.machine().clone());
    m.public_ip = Some("127.0.0.1".parse().unwrap());
    agent.publish_machine(&m, api_addr).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_takes_only_an_ip_and_port_and_uses_its_own_tls() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    let server_tls = || ServerTls {
        cert: d.join("server.crt"),
        key: d.join("server.key"),
        client_ca: Some(d.join("ca.crt")),
    };
    let forward_tls = || ClientTls {
        ca: Some(d.join("ca.crt")),
        cert: Some(d.join("client.crt")),
        key: Some(d.join("client.key")),
        domain: None,
    };
    let m1 = fleetd(
        &etcd,
        d,
        "m1",
        true,
        Some(server_tls()),
        Some(forward_tls()),
    )
    .await;
    let m2 = fleetd(
        &etcd,
        d,
        "m2",
        true,
        Some(server_tls()),
        Some(forward_tls()),
    )
    .await;
    let reg = registry(&etcd).await;
    reg.create_unit(&name("there.service"), &UnitFile::parse(UNIT).unwrap())
        .await
        .unwrap();
    run_on(&reg, "there.service", &m2).await;
    let c = unix_client(&m1).await;
    let there = name("there.service");
    let journal = || c.journal(&there, 1, false, "cat");
    let expected = "journal of m2: --no-pager --output=cat -n 1 --unit=there.service\n";

    let (out, _, _) = collect(journal().await.unwrap()).await;
    assert_eq!(out, expected);
    // A record asking for plaintext does not get it: m1 speaks TLS, as configured.
    let port = m2.tcp.unwrap().port();
    for addr in [
        format!("http://127.0.0.1:{port}"),
        format!("127.0.0.1:{port}"),
    ] {
        publish_addr(&m2, &addr).await;
        let (out, _, _) = collect(journal().await.unwrap()).await;
        assert_eq!(out, expected, "api_addr {addr}");
    }
    // Anything but IP:PORT is refused with one line naming the machine.
    for bad in [
        "unix:///run/fleet.sock".to_string(),
        format!("localhost:{port}"),
        format!("http://127.0.0.1:{port}/x"),
        format!("ftp://127.0.0.1:{port}"),
        format!("user@127.0.0.1:{port}"),
        format!("0.0.0.0:{port}"),
        "127.0.0.1".to_string(),
        "127.0.0.1:0".to_string(),
        format!("127.0.0.1:{port}\nx"),
        "-oProxyCommand=touch pwned".to_string(),
    ] {
        publish_addr(&m2, &bad).await;
        let err = match journal().await {
            Ok(_) => panic!("api_addr {bad:?} was used"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("machine m2 publishes an invalid API address")
                && err.contains("IP:PORT")
                && !err.contains('\n'),
            "{bad:?}: {err}"
        );
        let err = match c.status(&name("there.service"), None).await {
            Ok(_) => panic!("api_addr {bad:?} was used"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("invalid API address"), "{bad:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_and_status_streams_are_bounded_per_client() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m1 = fleetd(&etcd, dir.path(), "m1", false, None, None).await;
    let reg = registry(&etcd).await;
    reg.create_unit(&name("here.service"), &UnitFile::parse(UNIT).unwrap())
        .await
        .unwrap();
    run_on(&reg, "here.service", &m1).await;
    let c = unix_client(&m1).await;
    let here = name("here.service");
    let mut open = Vec::new();
    for _ in 0..fleet_api::MAX_STREAMS_PER_CLIENT {
        let mut s = c.journal(&here, 1, true, "cat").await.unwrap();
        // journalctl is running: its first line arrived.
        assert!(matches!(s.next().await, Ok(Some(OutputPiece::Stdout(_)))));
        open.push(s);
    }
    let refused = |r: Result<fleet_api::Output, fleet_api::ApiError>| match r {
        Ok(_) => panic!("stream past the limit was served"),
        Err(fleet_api::ApiError::Status(s)) => (s.code(), s.message().to_string()),
        Err(e) => panic!("unexpected {e}"),
    };
    let expected = (
        tonic::Code::ResourceExhausted,
        "too many journal/status streams (limit 16 per client); close some".to_string(),
    );
    assert_eq!(refused(c.journal(&here, 1, true, "cat").await), expected);
    assert_eq!(refused(c.status(&here, None).await), expected);
    // Other calls are not affected.
    assert!(c.get_unit(&here).await.unwrap().is_some());
    // Closing streams frees their slots (once the server has seen them go).
    open.truncate(fleet_api::MAX_STREAMS_PER_CLIENT - 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        match c.status(&here, None).await {
            Ok(out) => break out,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("too many"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    };
    let (out, _, _) = collect(out).await;
    assert_eq!(out, "status on m1: status -l --no-pager -- here.service\n");
}

/// A valid unit of about `kib` KiB.
fn big_unit(kib: usize) -> UnitFile {
    let mut text = String::from("[Service]\nExecStart=/bin/sleep 1000\n");
    for i in 0..kib {
        text.push_str(&format!("Environment=V{i}={}\n", "x".repeat(1000)));
    }
    UnitFile::parse(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_sized_by_bytes_so_big_units_list() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fleetd(&etcd, dir.path(), "m1", false, None, None).await;
    let reg = registry(&etcd).await;
    let names: Vec<UnitName> = (0..6).map(|i| name(&format!("big{i}.service"))).collect();
    let file = big_unit(880);
    for n in &names {
        assert_eq!(
            reg.create_unit(n, &file).await.unwrap(),
            CreateOutcome::Created
        );
        run_on(&reg, n.as_str(), &f).await;
    }
    let c = unix_client(&f).await;
    let snap = c.snapshot().await.unwrap();
    assert_eq!(snap.units.len(), 6);
    assert!(snap.units.iter().all(|u| u.file == file));
    assert_eq!(snap.states.len(), 6);
    let mut asked = names.clone();
    asked.insert(3, name("none.service"));
    let got = c.get_units(&asked).await.unwrap();
    assert_eq!(got.len(), 7);
    assert!(got[3].is_none());
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, u)| i == 3 || u.as_ref().is_some_and(|u| u.file == file))
    );
    assert_eq!(c.list_states_at().await.unwrap().1.len(), 6);
    assert_eq!(c.list_machines().await.unwrap().len(), 1);
}
