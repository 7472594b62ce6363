//! Integration tests: devsim devices driven through the `routeros` client over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use devsim::{Fleet, FleetOptions, ManifestEntry, ManualClock, RosVersion, SystemClock};
use routeros::{Client, Command, Config, Error, Password, Query, TlsPolicy};

mod ssh;

async fn fleet(n: usize) -> Fleet {
    Fleet::start(FleetOptions::new(n, Arc::new(SystemClock::new())))
        .await
        .unwrap()
}

fn cfg(m: &ManifestEntry) -> Config {
    let mut c = Config::new(
        m.api.ip().to_string(),
        m.username.clone(),
        Password::new(m.password.clone()),
    )
    .with_port(m.api.port());
    c.command_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c
}

async fn connect(m: &ManifestEntry) -> Client {
    Client::connect(&cfg(m)).await.unwrap()
}

/// Creates `name` with `contents` on device `m`: `/file add` from 7.9, SFTP before (no
/// `/file add` there).
async fn put_file(c: &Client, m: &ManifestEntry, name: &str, contents: &str) {
    let v: RosVersion = m.version.parse().unwrap();
    if v >= RosVersion::new(7, 9, 0) {
        c.run(
            Command::new("/file/add")
                .attr("name", name)
                .attr("contents", contents),
        )
        .await
        .unwrap();
    } else {
        ssh::sftp_put(m, name, contents.as_bytes()).await;
    }
}

fn s(v: &bytes::Bytes) -> String {
    String::from_utf8_lossy(v).to_string()
}

#[tokio::test]
async fn login_print_add_set_remove() {
    let f = fleet(2).await;
    let m = &f.manifest()[0];
    let c = connect(m).await;
    let r = c.run(Command::new("/system/identity/print")).await.unwrap();
    assert_eq!(r.rows[0].get_str("name"), Some("devsim-00000"));
    let r = c
        .run(
            Command::new("/ip/address/add")
                .attr("address", "10.9.0.1/24")
                .attr("interface", "ether2")
                .attr("comment", "netledger-change-c1"),
        )
        .await
        .unwrap();
    let id = s(r.ret().unwrap());
    assert!(id.starts_with('*'));
    let r = c
        .run(Command::new("/ip/address/print").query(Query::eq("address", "10.9.0.1/24")))
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 1);
    assert_eq!(r.rows[0].get_str(".id"), Some(id.as_str()));
    assert_eq!(r.rows[0].get_str("disabled"), Some("false"));
    // duplicate
    let e = c
        .run(
            Command::new("/ip/address/add")
                .attr("address", "10.9.0.1/24")
                .attr("interface", "ether2"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Trap { trap, .. } if trap.message == "failure: already have such address"),
        "{e}"
    );
    // bad interface: category 1
    let e = c
        .run(
            Command::new("/ip/address/add")
                .attr("address", "10.9.1.1/24")
                .attr("interface", "asdf"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Trap { trap, .. } if trap.message == "input does not match any value of interface" && trap.category.map(|c| c.code()) == Some(1)),
        "{e}"
    );
    c.run(
        Command::new("/ip/address/set")
            .id(&id)
            .attr("comment", "x y"),
    )
    .await
    .unwrap();
    let r = c
        .run(
            Command::new("/ip/address/print")
                .proplist(&["comment"])
                .query(Query::eq(".id", &id)),
        )
        .await
        .unwrap();
    assert_eq!(r.rows[0].get_str("comment"), Some("x y"));
    assert_eq!(r.rows[0].len(), 1);
    // count-only
    let r = c
        .run(Command::new("/ip/address/print").attr("count-only", ""))
        .await
        .unwrap();
    assert_eq!(s(r.ret().unwrap()), "2");
    c.run(Command::new("/ip/address/remove").id(&id))
        .await
        .unwrap();
    let e = c
        .run(Command::new("/ip/address/remove").id(&id))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Trap { trap, .. } if trap.message == "no such item"),
        "{e}"
    );
    // unknown menu: two traps
    let e = c.run(Command::new("/ip/adress/print")).await.unwrap_err();
    match e {
        Error::Trap { trap, more, .. } => {
            assert_eq!(trap.message, "no such command or directory (adress)");
            assert_eq!(more[0].message, "no such command prefix");
        }
        other => panic!("{other}"),
    }
    // the change id was counted once
    assert_eq!(f.device(0).unwrap().change_counts().get("c1"), Some(&1));
    c.close().await;
}

#[tokio::test]
async fn queries_with_stack_ops_and_empty_reply() {
    let f = fleet(4).await;
    // device 3 runs 7.18.2 (has !empty); find a v7.18+ and a v6 device
    let man = f.manifest();
    for m in &man {
        let c = connect(m).await;
        let r = c
            .run(
                Command::new("/interface/print")
                    .query(Query::eq("type", "ether"))
                    .query(Query::eq("type", "bridge"))
                    .query(Query::Ops("|".into())),
            )
            .await
            .unwrap();
        assert!(
            r.rows
                .iter()
                .all(|row| matches!(row.get_str("type"), Some("ether" | "bridge")))
        );
        assert!(
            r.rows
                .iter()
                .any(|row| row.get_str("type") == Some("bridge"))
        );
        let r = c
            .run(Command::new("/ip/firewall/filter/print").query(Query::eq("comment", "nomatch")))
            .await
            .unwrap();
        assert!(r.rows.is_empty());
        let v: RosVersion = m.version.parse().unwrap();
        assert_eq!(r.empty, v >= RosVersion::new(7, 18, 0), "{}", m.version);
    }
}

#[tokio::test]
async fn api_ssl_with_pinned_fingerprint() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let fp: routeros::Fingerprint = m.tls_sha256.parse().unwrap();
    let c = Config::new(
        "127.0.0.1",
        m.username.clone(),
        Password::new(m.password.clone()),
    )
    .with_tls(TlsPolicy::PinnedSha256(fp.0))
    .with_port(m.api_ssl.port());
    let client = Client::connect(&c).await.unwrap();
    let r = client
        .run(Command::new("/system/resource/print"))
        .await
        .unwrap();
    assert_eq!(
        r.rows[0]
            .get_str("version")
            .map(|v| v.ends_with("(stable)")),
        Some(true)
    );
    // a wrong pin is refused
    let bad = Config::new(
        "127.0.0.1",
        m.username.clone(),
        Password::new(m.password.clone()),
    )
    .with_tls(TlsPolicy::PinnedSha256([0u8; 32]))
    .with_port(m.api_ssl.port());
    assert!(Client::connect(&bad).await.is_err());
}

#[tokio::test]
async fn wrong_password_is_rejected() {
    let f = fleet(1).await;
    let m = f.manifest()[0].clone();
    let mut c = cfg(&m);
    c.password = Password::new("nope");
    let e = Client::connect(&c).await.unwrap_err();
    assert!(
        matches!(&e, Error::LoginRejected { message, .. } if message == "invalid user name or password (6)"),
        "{e}"
    );
}

#[tokio::test]
async fn export_reflects_changes_and_sensitivity() {
    let f = fleet(2).await;
    for m in f.manifest() {
        let c = connect(&m).await;
        c.run(
            Command::new("/ppp/secret/add")
                .attr("name", "u1")
                .attr("password", "s3cret")
                .attr("service", "l2tp"),
        )
        .await
        .unwrap();
        c.run(Command::new("/system/identity/set").attr("name", "edge-1"))
            .await
            .unwrap();
        // over the API, /export without file answers only !done
        let r = c.run(Command::new("/export")).await.unwrap();
        assert!(r.rows.is_empty() && r.ret().is_none());
        c.run(Command::new("/export").attr("file", "cfg"))
            .await
            .unwrap();
        let r = c
            .run(Command::new("/file/print").query(Query::eq("name", "cfg.rsc")))
            .await
            .unwrap();
        let text = r.rows[0].get_str("contents").unwrap().to_string();
        assert!(text.contains("/system identity\nset name=edge-1"), "{text}");
        assert!(text.contains("add name=u1"));
        let v: RosVersion = m.version.parse().unwrap();
        if v.major >= 7 {
            assert!(!text.contains("s3cret"), "v7 hides sensitive values");
            c.run(
                Command::new("/export")
                    .attr("file", "full")
                    .attr("show-sensitive", ""),
            )
            .await
            .unwrap();
            let r = c
                .run(Command::new("/file/print").query(Query::eq("name", "full.rsc")))
                .await
                .unwrap();
            assert!(
                r.rows[0]
                    .get_str("contents")
                    .unwrap()
                    .contains("password=s3cret")
            );
        } else {
            assert!(
                text.contains("password=s3cret"),
                "v6 shows sensitive values"
            );
            let e = c
                .run(Command::new("/export").attr("show-sensitive", ""))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, Error::Trap { trap, .. } if trap.message == "unknown parameter show-sensitive"),
                "{e}"
            );
        }
    }
}

#[tokio::test]
async fn all_corpus_exports_load_and_export_back() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/routeros-exports");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rsc"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 16);
    let texts: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut opts = FleetOptions::new(16, Arc::new(SystemClock::new()));
    opts.exports = texts.clone();
    let f = Fleet::start(opts).await.unwrap();
    for (i, text) in texts.iter().enumerate() {
        let d = f.device(i).unwrap();
        let exported = d.export(true);
        let mut orig = rosconfig::parse_export(text).unwrap();
        let mut mine = rosconfig::parse_export(&exported).unwrap();
        // the device adds its identity when the file had none
        let idp = rosconfig::MenuPath::parse("/system identity");
        if orig.setting(&idp, "name").is_none() {
            orig.set_settings(
                &idp,
                vec![rosconfig::Attr::new("name", d.default_identity())],
            );
        }
        mine.header = orig.header.clone();
        let (a, b) = (orig.normalised(), mine.normalised());
        assert!(
            a == b,
            "{}:\n{}",
            files[i].display(),
            rosconfig::unified_diff(&a, &b, "file", "device", 1)
        );
        assert_eq!(
            f.manifest()[i].version,
            orig.header.version.clone().unwrap().trim_end_matches(".0")
        );
    }
}

#[tokio::test]
async fn manual_clock_scheduler_reverts_a_cut() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(1, clock.clone());
    opts.tick = None;
    opts.reboot_time = Duration::from_secs(30);
    let f = Fleet::start(opts).await.unwrap();
    let m = f.manifest()[0].clone();
    let d = f.device(0).unwrap().clone();
    let c = connect(&m).await;
    // snapshot + arm a rollback timer (interval 0, start in 60 s)
    c.run(
        Command::new("/system/backup/save")
            .attr("name", "snap")
            .attr("dont-encrypt", "yes"),
    )
    .await
    .unwrap();
    let r = c.run(Command::new("/system/clock/print")).await.unwrap();
    let date = r.rows[0].get_str("date").unwrap().to_string();
    let t = Duration::from_secs(1_700_000_000 % 86_400 + 60);
    let start = format!(
        "{:02}:{:02}:{:02}",
        t.as_secs() / 3600,
        t.as_secs() / 60 % 60,
        t.as_secs() % 60
    );
    c.run(
        Command::new("/system/scheduler/add")
            .attr("name", "netledger-rollback-77")
            .attr("start-date", &date)
            .attr("start-time", &start)
            .attr("interval", "0s")
            .attr("on-event", "/system backup load name=snap"),
    )
    .await
    .unwrap();
    // the change cuts management access
    d.edit_faults(|x| x.cut_access_on_change = true);
    c.run(
        Command::new("/ip/firewall/filter/add")
            .attr("chain", "input")
            .attr("action", "drop")
            .attr("comment", "netledger-change-77"),
    )
    .await
    .unwrap();
    assert!(!d.is_reachable());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = Client::connect(&cfg(&m)).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Connect { .. } | Error::ConnectTimeout { .. } | Error::ConnectionClosed { .. }
        ),
        "{e}"
    );
    // not yet due
    clock.advance(Duration::from_secs(30));
    f.tick();
    assert!(!d.is_reachable());
    // due: backup load -> reboot (30 s) -> back with the old config
    clock.advance(Duration::from_secs(31));
    f.tick();
    assert!(!d.is_reachable());
    clock.advance(Duration::from_secs(31));
    f.tick();
    assert!(d.is_reachable());
    assert!(d.uptime() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = connect(&m).await;
    let r = c
        .run(
            Command::new("/ip/firewall/filter/print")
                .query(Query::eq("comment", "netledger-change-77")),
        )
        .await
        .unwrap();
    assert!(r.rows.is_empty(), "reverted");
    assert_eq!(d.change_counts().get("77"), Some(&1));
}

#[tokio::test]
async fn faults_as_the_client_sees_them() {
    let f = fleet(1).await;
    let m = f.manifest()[0].clone();
    let d = f.device(0).unwrap().clone();
    // login rejected
    d.edit_faults(|x| x.reject_login = true);
    let e = Client::connect(&cfg(&m)).await.unwrap_err();
    assert!(
        matches!(&e, Error::LoginRejected { message, .. } if message == "invalid user name or password (6)"),
        "{e}"
    );
    d.edit_faults(|x| x.reject_login = false);
    // slow replies -> client timeout
    d.edit_faults(|x| x.delay_ms = 500);
    let mut slow = cfg(&m);
    slow.command_timeout = Duration::from_secs(5);
    let c = Client::connect(&slow).await.unwrap();
    let e = c
        .run_with_timeout(
            Command::new("/system/identity/print"),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    // tagged commands are answered concurrently despite the delay: one after the other they
    // would take at least 1000 ms (not a speed target: a concurrency check with 450 ms slack)
    let t0 = std::time::Instant::now();
    let (a, b) = tokio::join!(
        c.run(Command::new("/system/identity/print")),
        c.run(Command::new("/system/resource/print"))
    );
    assert!(a.is_ok() && b.is_ok());
    assert!(
        t0.elapsed() < Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
    d.edit_faults(|x| x.delay_ms = 0);
    // connection dropped after N commands (login counts)
    d.edit_faults(|x| x.drop_after_commands = Some(2));
    let c = connect(&m).await;
    c.run(Command::new("/system/identity/print")).await.unwrap();
    let e = c
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap_err();
    assert!(e.is_connection_lost(), "{e}");
    d.edit_faults(|x| x.drop_after_commands = None);
    // the next command of a path fails once (`!fatal`, connection closed), without effect
    d.edit_faults(|x| {
        x.fail_next = Some(devsim::FailNext {
            path: "/system/identity/set".into(),
            count: 1,
            message: "transient".into(),
        })
    });
    let c = connect(&m).await;
    c.run(Command::new("/system/identity/print")).await.unwrap();
    let e = c
        .run(Command::new("/system/identity/set").attr("name", "failed"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Fatal { reason } if reason == "transient"),
        "{e}"
    );
    assert_eq!(d.faults().fail_next, None, "spent");
    let c = connect(&m).await;
    c.run(Command::new("/system/identity/set").attr("name", "second"))
        .await
        .unwrap();
    assert!(d.export(false).contains("name=second"));
    assert!(!d.export(false).contains("name=failed"));
    // corrupted frames
    let c = connect(&m).await;
    d.edit_faults(|x| x.corrupt_frames = true);
    let e = c
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Codec { .. }), "{e}");
    d.edit_faults(|x| x.corrupt_frames = false);
    // unreachable
    d.edit_faults(|x| x.unreachable = true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = Client::connect(&cfg(&m)).await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    d.edit_faults(|x| x.unreachable = false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    connect(&m).await.close().await;
}

#[tokio::test]
async fn reboot_upgrade_and_failed_upgrade() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(1, clock.clone());
    opts.tick = None;
    opts.reboot_time = Duration::from_secs(20);
    let f = Fleet::start(opts).await.unwrap();
    let m = f.manifest()[0].clone();
    let d = f.device(0).unwrap().clone();
    let old = d.version();
    let new = RosVersion::new(7, 19, 4);
    for fail in [true, false] {
        d.set_available_version(new);
        d.edit_faults(|x| x.fail_upgrade = fail);
        clock.advance(Duration::from_secs(100));
        // the listener is rebound asynchronously after the reboot
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = connect(&m).await;
        let r = c
            .run(Command::new("/system/package/update/check-for-updates"))
            .await
            .unwrap();
        assert_eq!(
            r.rows[0].get_str("status"),
            Some("New version is available")
        );
        // install reboots: the connection drops instead of !done
        let e = c
            .run(Command::new("/system/package/update/install"))
            .await
            .unwrap_err();
        assert!(e.is_connection_lost(), "{e}");
        assert!(!d.is_reachable());
        clock.advance(Duration::from_secs(21));
        f.tick();
        assert!(d.is_reachable());
        assert!(d.uptime() < Duration::from_secs(1));
        assert_eq!(d.version(), if fail { old } else { new });
    }
}

#[tokio::test]
async fn import_reports_the_failing_line_and_dry_run_is_gated() {
    let f = fleet(4).await;
    for m in f.manifest() {
        let c = connect(&m).await;
        let script =
            "/ip pool\nadd name=p-netledger-change-9 ranges=10.0.0.1-10.0.0.9\nremove *77\n";
        put_file(&c, &m, "chg.rsc", script).await;
        let v: RosVersion = m.version.parse().unwrap();
        let dry = c
            .run(
                Command::new("/import")
                    .attr("file-name", "chg.rsc")
                    .attr("dry-run", ""),
            )
            .await;
        if v.has_import_dry_run() {
            let e = dry.unwrap_err();
            assert!(
                matches!(&e, Error::Trap { trap, .. } if trap.message == "no such item (line 3 column 1)"),
                "{e}"
            );
            // dry run changed nothing
            let r = c
                .run(
                    Command::new("/ip/pool/print").query(Query::eq("name", "p-netledger-change-9")),
                )
                .await
                .unwrap();
            assert!(r.rows.is_empty());
        } else {
            let e = dry.unwrap_err();
            assert!(
                matches!(&e, Error::Trap { trap, .. } if trap.message == "unknown parameter dry-run"),
                "{e}"
            );
        }
        let e = c
            .run(Command::new("/import").attr("file-name", "chg.rsc"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Trap { trap, .. } if trap.message == "no such item (line 3 column 1)"),
            "{e}"
        );
        // lines before the failure stay applied, like RouterOS import
        let r = c
            .run(Command::new("/ip/pool/print").query(Query::eq("name", "p-netledger-change-9")))
            .await
            .unwrap();
        assert_eq!(r.rows.len(), 1);
    }
}

/// Serves one HTTP response with `body` to every request, on loopback.
async fn http_once(body: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let head = if req.starts_with("GET /pkg/") {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = s.write_all(head.as_bytes()).await;
            if req.starts_with("GET /pkg/") {
                let _ = s.write_all(body).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn fetch_package_install_routerboard_firmware_ping_and_script_files() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(1, clock.clone());
    opts.tick = None;
    opts.v6_share = 0.0;
    opts.reboot_time = Duration::from_secs(10);
    let f = Fleet::start(opts).await.unwrap();
    let m = f.manifest()[0].clone(); // 7.16.2 RB5009, arm64
    let d = f.device(0).unwrap().clone();
    let http = http_once(b"not really an npk").await;
    let c = connect(&m).await;
    // fetch: status rows, then a `package` file with the package-* properties
    let url = format!("http://{http}/pkg/routeros-7.19.4-arm64.npk");
    let r = c
        .run(Command::new("/tool/fetch").attr("url", &url))
        .await
        .unwrap();
    let st: Vec<&str> = r.rows.iter().filter_map(|r| r.get_str("status")).collect();
    assert_eq!(st, ["connecting", "downloading", "finished"]);
    let r = c
        .run(Command::new("/file/print").query(Query::eq("name", "routeros-7.19.4-arm64.npk")))
        .await
        .unwrap();
    let row = &r.rows[0];
    assert_eq!(row.get_str("type"), Some("package"));
    assert_eq!(row.get_str("size"), Some("17"));
    assert_eq!(row.get_str("package-version"), Some("7.19.4"));
    assert_eq!(row.get_str("package-architecture"), Some("arm64"));
    // HTTP errors trap with RouterOS's text
    let e = c
        .run(Command::new("/tool/fetch").attr("url", format!("http://{http}/nope.npk")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Trap { trap, .. } if trap.message == "failure: Status 404, Not Found"),
        "{e}"
    );
    // `/file add` inside an imported script creates a file; the dry run does not
    c.run(
        Command::new("/file/add")
            .attr("name", "mk.rsc")
            .attr("contents", "/file add name=made.txt contents=x\n"),
    )
    .await
    .unwrap();
    c.run(
        Command::new("/import")
            .attr("file-name", "mk.rsc")
            .attr("dry-run", ""),
    )
    .await
    .unwrap();
    assert!(c.file("made.txt").await.unwrap().is_none());
    c.run(Command::new("/import").attr("file-name", "mk.rsc"))
        .await
        .unwrap();
    assert_eq!(
        c.file("made.txt").await.unwrap().unwrap().kind.as_deref(),
        Some(".txt file")
    );
    // ping: connected subnet answers, elsewhere times out
    let ping = |a: &str| Command::new("/ping").attr("address", a).attr("count", "2");
    let r = c.run(ping("192.168.88.7")).await.unwrap();
    assert_eq!(r.rows[1].get_str("received"), Some("2"));
    let r = c.run(ping("203.0.113.9")).await.unwrap();
    assert_eq!(r.rows[1].get_str("received"), Some("0"));
    assert_eq!(r.rows[0].get_str("status"), Some("timeout"));
    // a reboot installs the uploaded package; RouterBOARD firmware lags behind
    c.reboot().await.unwrap();
    clock.advance(Duration::from_secs(11));
    f.tick();
    assert_eq!(d.version(), RosVersion::new(7, 19, 4));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = connect(&m).await;
    assert!(c.file("routeros-7.19.4-arm64.npk").await.unwrap().is_none());
    let rb = c.routerboard().await.unwrap().unwrap();
    assert_eq!(rb.current_firmware.as_deref(), Some("7.16.2"));
    assert!(rb.upgrade_pending());
    c.routerboard_upgrade().await.unwrap();
    c.reboot().await.unwrap();
    clock.advance(Duration::from_secs(11));
    f.tick();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = connect(&m).await;
    let rb = c.routerboard().await.unwrap().unwrap();
    assert_eq!(rb.current_firmware.as_deref(), Some("7.19.4"));
    assert!(!rb.upgrade_pending());
}

#[tokio::test]
async fn history_records_changes_from_every_path_and_interface_counters_move() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(1, clock.clone());
    opts.tick = None;
    let f = Fleet::start(opts).await.unwrap();
    let m = f.manifest()[0].clone();
    let c = connect(&m).await;
    let history = |c: Client| async move {
        c.run(Command::new("/system/history/print").proplist(&[".id", "action", "by"]))
            .await
            .unwrap()
            .rows
    };
    assert!(history(c.clone()).await.is_empty());
    c.set_identity("renamed").await.unwrap();
    let rows = history(c.clone()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get_str("by"), Some("admin"));
    // prints change nothing; an out-of-band (console) change is recorded too
    c.resources().await.unwrap();
    f.device(0)
        .unwrap()
        .apply_out_of_band("/ip address add address=10.7.7.1/24 interface=ether2")
        .unwrap();
    let rows = history(c.clone()).await;
    assert_eq!(rows.len(), 2);
    // newest first; a console change is made as RouterOS's factory user by default
    assert_eq!(rows[0].get_str("by"), Some(devsim::CONSOLE_USER));
    assert_eq!(rows[0].get_str("action"), Some("address added"));
    assert_eq!(rows[1].get_str("action"), Some("identity changed"));
    assert_ne!(rows[0].get_str(".id"), rows[1].get_str(".id"));
    // counters grow with uptime, errors included
    let first = c.interfaces().await.unwrap();
    clock.advance(Duration::from_secs(7_200));
    let later = c.interfaces().await.unwrap();
    assert!(later[0].rx_byte.unwrap() > first[0].rx_byte.unwrap());
    assert!(later[0].tx_error.unwrap() > first[0].tx_error.unwrap());
    assert!(later.iter().any(|i| i.rx_error.unwrap_or(0) > 0));
}

/// A client logged in as `user` with `password`.
async fn connect_as(m: &ManifestEntry, user: &str, password: &str) -> Client {
    let mut c = cfg(m);
    c.user = user.to_owned();
    c.password = Password::new(password.to_owned());
    Client::connect(&c).await.unwrap()
}

#[tokio::test]
async fn system_history_names_the_routeros_user_of_every_change_and_user_active_the_sessions() {
    // 1_700_000_000 s = 2023-11-14 22:13:20 UTC
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(2, clock.clone());
    opts.v6_share = 0.5;
    opts.tick = None;
    let f = Fleet::start(opts).await.unwrap();
    let m = f.manifest();
    // device 0 runs 7.16.2 (ISO dates), device 1 6.49.7 (`mmm/dd/yyyy`, ROUTEROS-NOTES §4.3)
    for (i, when) in [(0, "2023-11-14 22:13:20"), (1, "nov/14/2023 22:13:20")] {
        let admin = connect(&m[i]).await;
        admin
            .run(
                Command::new("/user/add")
                    .attr("name", "bob")
                    .attr("group", "full")
                    .attr("password", "bob-secret"),
            )
            .await
            .unwrap();
        let bob = connect_as(&m[i], "bob", "bob-secret").await;
        bob.run(
            Command::new("/ip/firewall/filter/add")
                .attr("chain", "forward")
                .attr("action", "drop"),
        )
        .await
        .unwrap();
        bob.run(Command::new("/ip/route/add").attr("gateway", "192.0.2.1"))
            .await
            .unwrap();
        // a script bob starts changes the configuration as bob
        put_file(&bob, &m[i], "bob.rsc", "/system identity set name=by-bob\n").await;
        bob.run(Command::new("/import").attr("file-name", "bob.rsc"))
            .await
            .unwrap();
        // prints and file writes are not configuration changes
        bob.run(Command::new("/ip/address/print")).await.unwrap();
        // out of band, by a named RouterOS user
        f.device(i)
            .unwrap()
            .apply_out_of_band_as(
                "carol",
                "/ip address add address=10.8.8.1/24 interface=ether2",
            )
            .unwrap();
        let rows = admin
            .run(Command::new("/system/history/print"))
            .await
            .unwrap()
            .rows;
        let seen: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.get_str("action").unwrap(), r.get_str("by").unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                ("address added", "carol"),
                ("identity changed", "bob"),
                ("route 0.0.0.0/0 added", "bob"),
                ("filter rule added", "bob"),
                ("user added", "admin"),
            ],
            "device {i}"
        );
        for r in &rows {
            assert!(r.get_str(".id").unwrap().starts_with('*'), "{r:?}");
            assert_eq!(r.get_str("policy"), Some("write"));
            assert_eq!(r.get_str("time"), Some(when), "device {i}");
            assert_eq!(r.get_str("undoable"), Some("true"));
            assert_eq!(r.get_str("redoable"), Some("false"));
        }
        // read-only
        let e = admin
            .run(Command::new("/system/history/remove").attr(".id", "*1"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Trap { .. }), "{e}");

        // the logged-in API sessions
        let active = |c: Client| async move {
            c.run(Command::new("/user/active/print"))
                .await
                .unwrap()
                .rows
        };
        let rows = active(admin.clone()).await;
        let names: Vec<&str> = rows.iter().map(|r| r.get_str("name").unwrap()).collect();
        assert_eq!(names, ["admin", "bob"], "device {i}");
        for r in &rows {
            assert!(r.get_str(".id").unwrap().starts_with('*'));
            assert_eq!(r.get_str("address"), Some("127.0.0.1"));
            assert_eq!(r.get_str("via"), Some("api"));
            assert_eq!(r.get_str("group"), Some("full"));
            assert_eq!(r.get_str("when"), Some(when));
        }
        bob.close().await;
        let mut left = Vec::new();
        for _ in 0..50 {
            left = active(admin.clone()).await;
            if left.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].get_str("name"), Some("admin"));
    }
}

#[tokio::test]
async fn system_history_keeps_the_newest_100_actions() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(1, clock.clone());
    opts.tick = None;
    let f = Fleet::start(opts).await.unwrap();
    let c = connect(&f.manifest()[0]).await;
    for k in 0..105 {
        clock.advance(Duration::from_secs(1));
        c.set_identity(&format!("r{k}")).await.unwrap();
    }
    let rows = c
        .run(Command::new("/system/history/print"))
        .await
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 100);
    // newest first: the 105th change (*69) down to the 6th (*6)
    assert_eq!(rows[0].get_str(".id"), Some("*69"));
    assert_eq!(rows[99].get_str(".id"), Some("*6"));
    assert_eq!(rows[0].get_str("time"), Some("2023-11-14 22:15:05"));
}

#[tokio::test]
async fn backup_default_name_is_the_same_over_the_api_and_in_scripts() {
    // 1_700_000_000 s = 2023-11-14 22:13:20 UTC
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(1, clock.clone());
    opts.tick = None;
    let f = Fleet::start(opts).await.unwrap();
    let m = f.manifest()[0].clone();
    let d = f.device(0).unwrap().clone();
    let c = connect(&m).await;
    c.run(Command::new("/system/backup/save")).await.unwrap();
    assert!(
        c.file("devsim-00000-20231114-2213.backup")
            .await
            .unwrap()
            .is_some()
    );
    clock.advance(Duration::from_secs(60));
    d.apply_out_of_band("/system backup save").unwrap();
    let f2 = c
        .file("devsim-00000-20231114-2214.backup")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f2.kind.as_deref(), Some("backup"));
    // a script started over the API that reboots: `!done`, then the connection drops
    c.run(
        Command::new("/system/script/add")
            .attr("name", "bounce")
            .attr("source", "/system reboot"),
    )
    .await
    .unwrap();
    let r = c
        .run(Command::new("/system/script/run").attr("number", "bounce"))
        .await;
    assert!(r.is_ok() || r.unwrap_err().is_connection_lost());
    assert!(!d.is_reachable());
}

#[tokio::test]
async fn file_add_exists_from_7_9_only() {
    // ROUTEROS-NOTES §5.9: `/file add` from 7.9beta2; before, an unknown command
    let mut exports = Vec::new();
    for v in ["6.49.7", "7.8", "7.9", "7.16.2"] {
        let mut o = FleetOptions::new(1, Arc::new(SystemClock::new()));
        o.v6_share = if v.starts_with('6') { 1.0 } else { 0.0 };
        o.ssh = false;
        o.tick = None;
        let one = Fleet::start(o).await.unwrap();
        let d = one.device(0).unwrap();
        let text = d.export(false);
        let actual = format!("by RouterOS {}", d.version());
        one.shutdown();
        assert!(text.contains(&actual), "{text}");
        exports.push(text.replacen(&actual, &format!("by RouterOS {v}"), 1));
    }
    let mut opts = FleetOptions::new(4, Arc::new(SystemClock::new()));
    opts.exports = exports;
    let f = Fleet::start(opts).await.unwrap();
    for (i, m) in f.manifest().iter().enumerate() {
        let v: RosVersion = m.version.parse().unwrap();
        assert_eq!(i < 2, v < RosVersion::new(7, 9, 0), "{}", m.version);
        let c = connect(m).await;
        let add = c
            .run(
                Command::new("/file/add")
                    .attr("name", "a.txt")
                    .attr("contents", "x"),
            )
            .await;
        // in a script: the device's own line, after a line that works
        let script = "/system identity set name=before\n/file add name=b.txt contents=y\n";
        put_file(&c, m, "s.rsc", script).await;
        let import = c
            .run(Command::new("/import").attr("file-name", "s.rsc"))
            .await;
        if v >= RosVersion::new(7, 9, 0) {
            add.unwrap();
            import.unwrap();
            assert!(c.file("a.txt").await.unwrap().is_some(), "{v}");
            assert!(c.file("b.txt").await.unwrap().is_some(), "{v}");
        } else {
            // over the API: the traps of a command that does not exist
            let e = add.unwrap_err();
            assert!(
                matches!(&e, Error::Trap { trap, .. }
                    if trap.message == "no such command or directory (add)"),
                "{v}: {e}"
            );
            let e = import.unwrap_err();
            assert!(
                matches!(&e, Error::Trap { trap, .. }
                    if trap.message == "bad command name add (line 2 column 7)"),
                "{v}: {e}"
            );
            assert!(c.file("a.txt").await.unwrap().is_none(), "{v}");
            assert!(c.file("b.txt").await.unwrap().is_none(), "{v}");
        }
        // the line before the failing one stayed applied
        let id = c.run(Command::new("/system/identity/print")).await.unwrap();
        assert_eq!(id.rows[0].get_str("name"), Some("before"), "{v}");
    }
}
