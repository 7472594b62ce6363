//! SSH and SFTP on devsim devices, driven by a russh client over loopback: logins
//! (password, authorized Ed25519 key, host key pinned by the manifest's SHA-256), console
//! commands over `exec` and the interactive shell, SFTP transfers, faults.

use std::sync::Arc;
use std::time::Duration;

use devsim::{Faults, Fleet, FleetOptions, ManifestEntry, ManualClock};
use routeros::Command;
use russh::client::{self, AuthResult, Handle};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, Disconnect};
use russh_sftp::client::SftpSession;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connect;

/// A client that accepts only the host key whose SHA-256 the manifest gives.
struct Pinned(String);

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(hex::encode(key.fingerprint(HashAlg::Sha256).as_bytes()) == self.0)
    }
}

async fn ssh_connect(m: &ManifestEntry) -> Result<Handle<Pinned>, russh::Error> {
    let cfg = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    client::connect(cfg, m.ssh, Pinned(m.ssh_host_key_sha256.clone())).await
}

async fn login(m: &ManifestEntry) -> Handle<Pinned> {
    let mut h = ssh_connect(m).await.unwrap();
    let r = h
        .authenticate_password(m.username.clone(), m.password.clone())
        .await
        .unwrap();
    assert!(matches!(r, AuthResult::Success), "{r:?}");
    h
}

/// Runs one command over `exec`: what it printed and its exit status.
async fn exec(h: &Handle<Pinned>, cmd: &str) -> (String, Option<u32>) {
    let mut ch = h.channel_open_session().await.unwrap();
    ch.exec(true, cmd).await.unwrap();
    let mut out = Vec::new();
    let mut code = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    (String::from_utf8(out).unwrap(), code)
}

async fn run(h: &Handle<Pinned>, cmd: &str) -> String {
    let (out, code) = exec(h, cmd).await;
    assert_eq!(code, Some(0), "{cmd}: {out}");
    out
}

async fn sftp(h: &Handle<Pinned>) -> SftpSession {
    let ch = h.channel_open_session().await.unwrap();
    ch.request_subsystem(true, "sftp").await.unwrap();
    SftpSession::new(ch.into_stream()).await.unwrap()
}

async fn upload(sftp: &SftpSession, path: &str, data: &[u8]) {
    let mut f = sftp.create(path).await.unwrap();
    f.write_all(data).await.unwrap();
    f.shutdown().await.unwrap();
}

async fn download(sftp: &SftpSession, path: &str) -> Vec<u8> {
    let mut f = sftp.open(path).await.unwrap();
    let mut data = Vec::new();
    f.read_to_end(&mut data).await.unwrap();
    data
}

/// Creates or replaces `name` on device `m` over SFTP (the way onto a device before 7.9,
/// which has no `/file add`).
pub(super) async fn sftp_put(m: &ManifestEntry, name: &str, data: &[u8]) {
    let h = login(m).await;
    let s = sftp(&h).await;
    upload(&s, name, data).await;
    s.close().await.unwrap();
    h.disconnect(Disconnect::ByApplication, "", "en")
        .await
        .unwrap();
}

/// Two devices (0: RouterOS 7.16.2, 1: 6.49.7) on a clock that stands still, so an
/// export's header is the same whenever it is taken.
async fn v7_and_v6() -> Fleet {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_717_243_200)));
    let mut opts = FleetOptions::new(2, clock);
    opts.v6_share = 0.5;
    let f = Fleet::start(opts).await.unwrap();
    assert!(f.manifest()[0].version.starts_with('7'));
    assert!(f.manifest()[1].version.starts_with('6'));
    f
}

fn client_key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

#[tokio::test]
async fn ssh_logins_by_password_and_authorized_key_with_a_pinned_host_key() {
    let f = v7_and_v6().await;
    let m = &f.manifest()[0];
    assert_eq!(m.ssh_host_key_sha256.len(), 64);
    assert_eq!(
        m.ssh_host_key_sha256,
        hex::encode(f.device(0).unwrap().ssh_host_key_sha256())
    );
    assert_ne!(m.ssh_host_key_sha256, f.manifest()[1].ssh_host_key_sha256);
    // password
    let h = login(m).await;
    assert_eq!(
        run(&h, "/system identity print").await.lines().next(),
        Some("devsim: print on a console is simulated for /file only (line 1 column 18)")
    );
    // the session shows in /user active as via=ssh
    let api = connect(m).await;
    let r = api.run(Command::new("/user/active/print")).await.unwrap();
    assert!(
        r.rows
            .iter()
            .any(|row| row.get_str("via") == Some("ssh") && row.get_str("name") == Some("admin")),
        "{:?}",
        r.rows
    );
    h.disconnect(Disconnect::ByApplication, "", "en")
        .await
        .unwrap();
    // wrong password
    let mut h = ssh_connect(m).await.unwrap();
    let r = h
        .authenticate_password(m.username.clone(), "wrong")
        .await
        .unwrap();
    assert!(!r.success());
    // a key nobody authorized, then the same key authorized for admin
    let key = Arc::new(client_key(7));
    let r = h
        .authenticate_publickey(
            m.username.clone(),
            PrivateKeyWithHashAlg::new(key.clone(), None),
        )
        .await
        .unwrap();
    assert!(!r.success());
    let line = key.public_key().to_openssh().unwrap();
    let dev = f.device(0).unwrap();
    assert!(dev.authorize_ssh_key("nobody", &line).is_err());
    assert!(
        dev.authorize_ssh_key("admin", "ssh-ed25519 not-base64")
            .is_err()
    );
    dev.authorize_ssh_key("admin", &format!("{line} netledger@test"))
        .unwrap();
    let mut h = ssh_connect(m).await.unwrap();
    let r = h
        .authenticate_publickey(
            m.username.clone(),
            PrivateKeyWithHashAlg::new(key.clone(), None),
        )
        .await
        .unwrap();
    assert!(r.success());
    assert!(run(&h, "/export").await.contains("by RouterOS 7.16.2"));
    // with a key, admin's SSH password login is refused (always-allow-password-login=no,
    // RouterOS's default); the API login is not affected; allowing it lets it in again
    let password_login = |m: ManifestEntry| async move {
        let mut p = ssh_connect(&m).await.unwrap();
        p.authenticate_password(m.username.clone(), m.password.clone())
            .await
            .unwrap()
            .success()
    };
    assert!(!password_login(m.clone()).await);
    connect(m).await;
    assert_eq!(
        run(&h, "/ip ssh set always-allow-password-login=yes").await,
        ""
    );
    assert!(password_login(m.clone()).await);
    assert_eq!(
        run(&h, "/ip ssh set always-allow-password-login=no").await,
        ""
    );
    assert!(!password_login(m.clone()).await);
    // the key is the device's, for admin only: not another device's, not another user's
    let mut other = ssh_connect(&f.manifest()[1]).await.unwrap();
    let r = other
        .authenticate_publickey("admin", PrivateKeyWithHashAlg::new(key.clone(), None))
        .await
        .unwrap();
    assert!(!r.success());
    // /user ssh-keys import over the console: a second user with a key from a file
    let api = connect(m).await;
    api.run(
        Command::new("/user/add")
            .attr("name", "ops")
            .attr("group", "full")
            .attr("password", "ops-pw"),
    )
    .await
    .unwrap();
    let key2 = Arc::new(client_key(9));
    let sf = sftp(&h).await;
    upload(
        &sf,
        "ops.pub",
        key2.public_key().to_openssh().unwrap().as_bytes(),
    )
    .await;
    assert_eq!(
        run(&h, "/user ssh-keys import public-key-file=ops.pub user=ops").await,
        ""
    );
    let mut h2 = ssh_connect(m).await.unwrap();
    let r = h2
        .authenticate_publickey("ops", PrivateKeyWithHashAlg::new(key2, None))
        .await
        .unwrap();
    assert!(r.success());
    // a pinned host key that does not match is refused
    let mut wrong = m.clone();
    wrong.ssh_host_key_sha256 = f.manifest()[1].ssh_host_key_sha256.clone();
    assert!(ssh_connect(&wrong).await.is_err());
    // the reject_login fault refuses passwords and keys
    dev.edit_faults(|x| x.reject_login = true);
    let mut h = ssh_connect(m).await.unwrap();
    let r = h
        .authenticate_password(m.username.clone(), m.password.clone())
        .await
        .unwrap();
    assert!(!r.success());
    let r = h
        .authenticate_publickey(m.username.clone(), PrivateKeyWithHashAlg::new(key, None))
        .await
        .unwrap();
    assert!(!r.success());
}

#[tokio::test]
async fn ssh_export_per_version_terse_and_unknown_arguments() {
    let f = v7_and_v6().await;
    let man = f.manifest();
    // RouterOS 7.16: ISO date, sensitive values hidden unless show-sensitive
    let h = login(&man[0]).await;
    let dev = f.device(0).unwrap();
    let out = run(&h, "/export").await;
    assert!(
        out.starts_with("# 2024-06-01 12:00:00 by RouterOS 7.16.2\n"),
        "{out}"
    );
    assert_eq!(out, dev.export(false));
    assert_eq!(
        run(&h, "export").await,
        out,
        "the root's export without a slash"
    );
    assert_eq!(run(&h, "/export show-sensitive").await, dev.export(true));
    let terse = run(&h, "/export terse").await;
    assert!(terse.starts_with("# 2024-06-01 12:00:00 by RouterOS 7.16.2\n"));
    assert!(
        terse.contains("\n/ip address add address=192.168.88.1/24 comment=defconf interface=bridge network=192.168.88.0\n"),
        "{terse}"
    );
    for l in terse.lines().filter(|l| !l.starts_with('#')) {
        assert!(l.starts_with('/') && !l.ends_with('\\'), "{l}");
    }
    let menu = run(&h, "/ip address export terse").await;
    assert!(
        menu.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.starts_with("/ip address "))
    );
    assert_eq!(
        run(&h, "/export hide-sensitive").await,
        "expected end of command (line 1 column 9)\n"
    );
    assert!(
        run(&h, "/export verbose")
            .await
            .starts_with("devsim: export verbose is not simulated")
    );
    assert_eq!(
        run(&h, "foo").await,
        "bad command name foo (line 1 column 1)\n"
    );
    // the slash form on v7
    assert_eq!(
        run(&h, "/system/backup/save name=s7 dont-encrypt=yes").await,
        "Configuration backup saved\n"
    );
    // RouterOS 6.49: old date format, sensitive values shown unless hide-sensitive
    let h6 = login(&man[1]).await;
    let dev6 = f.device(1).unwrap();
    let out = run(&h6, "/export").await;
    assert!(
        out.starts_with("# jun/01/2024 12:00:00 by RouterOS 6.49.7\n"),
        "{out}"
    );
    assert_eq!(out, dev6.export(true));
    assert_eq!(run(&h6, "/export hide-sensitive").await, dev6.export(false));
    assert_eq!(
        run(&h6, "/export show-sensitive").await,
        "expected end of command (line 1 column 9)\n"
    );
    assert!(
        run(&h6, "/export terse")
            .await
            .contains("\n/system identity set name=devsim-00001\n")
    );
    // v6 knows only the space form
    assert_eq!(
        run(&h6, "/system/backup/save name=s6").await,
        "bad command name system/backup/save (line 1 column 2)\n"
    );
    assert_eq!(
        run(&h6, "/system backup save name=s6").await,
        "Configuration backup saved\n"
    );
    assert!(dev6.file_names().contains(&"s6.backup".to_string()));
    // a change over SSH is the SSH user's in /system/history
    run(&h6, "/ip address add address=10.61.0.1/24 interface=ether2").await;
    let api = connect(&man[1]).await;
    let r = api
        .run(Command::new("/system/history/print"))
        .await
        .unwrap();
    assert_eq!(r.rows[0].get_str("by"), Some("admin"));
    assert_eq!(r.rows[0].get_str("action"), Some("address added"));
}

#[tokio::test]
async fn backup_over_ssh_then_sftp_download_and_file_print_and_remove() {
    let f = v7_and_v6().await;
    for (i, m) in f.manifest().iter().enumerate() {
        let h = login(m).await;
        assert_eq!(
            run(&h, "/system backup save name=nightly password=secret").await,
            "Configuration backup saved\n"
        );
        let sf = sftp(&h).await;
        let data = download(&sf, "/nightly.backup").await;
        assert!(data.starts_with(b"DEVSIM-BACKUP 1 ENCRYPTED\n"));
        let meta = sf.metadata("nightly.backup").await.unwrap();
        assert_eq!(meta.size, Some(data.len() as u64));
        // the same bytes through the API's /file/read (v7.13+) or contents
        let api = connect(m).await;
        let r = api
            .run(Command::new("/file/print").query(routeros::Query::eq("name", "nightly.backup")))
            .await
            .unwrap();
        assert_eq!(
            r.rows[0].get_str("size"),
            Some(data.len().to_string().as_str())
        );
        assert_eq!(r.rows[0].get_str("type"), Some("backup"));
        // /file print: a table with the exact size
        let table = run(&h, "/file print").await;
        let time = if i == 0 {
            "LAST-MODIFIED"
        } else {
            "CREATION-TIME"
        };
        let head = table.lines().next().unwrap();
        assert!(
            head.starts_with(" # NAME") && head.contains("TYPE") && head.ends_with(time),
            "{table}"
        );
        let row = table
            .lines()
            .find(|l| l.contains("nightly.backup"))
            .unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        let size = data.len().to_string();
        assert_eq!(
            cols[..4].to_vec(),
            vec!["0", "nightly.backup", "backup", size.as_str()],
            "{table}"
        );
        // listing the root
        let names: Vec<String> = sf
            .read_dir("/")
            .await
            .unwrap()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec!["nightly.backup".to_string()]);
        // remove: by name, by find, by SFTP
        run(&h, "/system backup save name=second dont-encrypt=yes").await;
        run(&h, "/system backup save name=third dont-encrypt=yes").await;
        assert_eq!(run(&h, "/file remove nightly.backup").await, "");
        assert_eq!(run(&h, "/file remove [find name=second.backup]").await, "");
        assert_eq!(
            run(&h, "/file remove nightly.backup").await,
            "no such item (line 1 column 7)\n"
        );
        sf.remove_file("third.backup").await.unwrap();
        assert!(f.device(i).unwrap().file_names().is_empty());
        assert!(!sf.try_exists("nightly.backup").await.unwrap());
    }
}

#[tokio::test]
async fn sftp_upload_then_import_over_exec_and_binary_files_round_trip() {
    let f = v7_and_v6().await;
    for (i, m) in f.manifest().iter().enumerate() {
        let h = login(m).await;
        let sf = sftp(&h).await;
        let script = "/ip address\nadd address=10.66.0.1/24 comment=\"over ssh\" interface=ether2\n/system identity set name=ssh-imported\n";
        upload(&sf, "push.rsc", script.as_bytes()).await;
        assert_eq!(
            run(&h, "/import file-name=push.rsc").await,
            "Script file loaded and executed successfully\n"
        );
        let api = connect(m).await;
        let r = api
            .run(
                Command::new("/ip/address/print")
                    .query(routeros::Query::eq("address", "10.66.0.1/24")),
            )
            .await
            .unwrap();
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0].get_str("comment"), Some("over ssh"));
        let r = api
            .run(Command::new("/system/identity/print"))
            .await
            .unwrap();
        assert_eq!(r.rows[0].get_str("name"), Some("ssh-imported"));
        assert!(
            run(&h, "/export")
                .await
                .contains("add address=10.66.0.1/24 comment=\"over ssh\" interface=ether2")
        );
        // a failing import names the line; the lines before it stay applied
        upload(&sf, "bad.rsc", b"/ip address add address=10.67.0.1/24 interface=ether2\n/ip address add address=10.67.0.1/24 interface=ether2\n").await;
        let out = run(&h, "/import file-name=bad.rsc verbose=yes").await;
        assert_eq!(
            out, "failure: already have such address (line 2 column 13)\n",
            "{out}"
        );
        // a binary package file: byte-exact, typed as a package in /file
        let npk: Vec<u8> = (0..70_000u32).map(|x| (x * 7 + x / 256) as u8).collect();
        let name = if i == 0 {
            "routeros-7.19.4-arm64.npk"
        } else {
            "routeros-mipsbe-6.49.13.npk"
        };
        upload(&sf, name, &npk).await;
        assert_eq!(download(&sf, name).await, npk);
        let r = api
            .run(Command::new("/file/print").query(routeros::Query::eq("name", name)))
            .await
            .unwrap();
        assert_eq!(r.rows[0].get_str("type"), Some("package"));
        assert_eq!(r.rows[0].get_str("size"), Some("70000"));
        if i == 0 {
            // /file/read (7.13+) returns the same bytes
            let r = api
                .run(
                    Command::new("/file/read")
                        .attr("file", name)
                        .attr("chunk-size", "32768"),
                )
                .await
                .unwrap();
            assert_eq!(
                r.rows[0].get("data").map(|d| d.to_vec()),
                Some(npk[..32_768].to_vec())
            );
        }
        // an uploaded *.auto.rsc runs at once, its result in *.auto.log
        upload(
            &sf,
            "setup.auto.rsc",
            b"/system identity set name=auto-ran\n",
        )
        .await;
        let r = api
            .run(Command::new("/system/identity/print"))
            .await
            .unwrap();
        assert_eq!(r.rows[0].get_str("name"), Some("auto-ran"));
        assert_eq!(
            download(&sf, "setup.auto.log").await,
            b"Script file loaded and executed successfully\n"
        );
    }
}

/// Reads the shell's output into `seen` until it contains `what`.
async fn wait_for(seen: &mut String, ch: &mut russh::Channel<client::Msg>, what: &str) {
    let read = async {
        while !seen.contains(what) {
            match ch.wait().await {
                Some(ChannelMsg::Data { data }) => seen.push_str(&String::from_utf8_lossy(&data)),
                Some(_) => {}
                None => panic!("channel closed before {what:?}: {seen:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no {what:?} in {seen:?}"));
}

#[tokio::test]
async fn interactive_shell_prompt_line_and_quit() {
    let f = v7_and_v6().await;
    for m in f.manifest() {
        let h = login(&m).await;
        let mut ch = h.channel_open_session().await.unwrap();
        ch.request_pty(true, "vt100", 200, 50, 0, 0, &[])
            .await
            .unwrap();
        ch.request_shell(true).await.unwrap();
        let mut seen = String::new();
        let prompt = format!("[admin@{}] > ", m.identity);
        wait_for(&mut seen, &mut ch, &prompt).await;
        ch.data(&b"/system backup save name=sh dont-encrypt=yes\r"[..])
            .await
            .unwrap();
        wait_for(&mut seen, &mut ch, "Configuration backup saved\r\n[admin@").await;
        // typed characters are echoed on a terminal
        assert!(
            seen.contains("/system backup save name=sh dont-encrypt=yes\r\n"),
            "{seen:?}"
        );
        ch.data(&b"/system identity set name=shell-1\r"[..])
            .await
            .unwrap();
        wait_for(&mut seen, &mut ch, "[admin@shell-1] > ").await;
        ch.data(&b"quit\r"[..]).await.unwrap();
        let mut closed = false;
        let mut code = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                ChannelMsg::Close => closed = true,
                _ => {}
            }
        }
        assert!(closed || code == Some(0));
        assert_eq!(code, Some(0));
    }
}

#[tokio::test]
async fn unreachable_refuses_ssh_and_a_reboot_ends_sessions_and_delay_delays() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_717_243_200)));
    let mut opts = FleetOptions::new(1, clock.clone());
    opts.tick = None;
    let f = Fleet::start(opts).await.unwrap();
    let m = &f.manifest()[0];
    let dev = f.device(0).unwrap();
    let h = login(m).await;
    dev.set_faults(Faults {
        unreachable: true,
        ..Faults::default()
    });
    // the open session ends, new connections are refused
    for _ in 0..50 {
        if h.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(h.is_closed());
    assert!(tokio::net::TcpStream::connect(m.ssh).await.is_err());
    assert!(!dev.is_ssh_reachable());
    dev.set_faults(Faults::default());
    let mut up = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(m.ssh).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up);
    // delay_ms delays the answer
    let h = login(m).await;
    dev.edit_faults(|x| x.delay_ms = 400);
    let t = std::time::Instant::now();
    run(&h, "/system backup save name=slow").await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    dev.edit_faults(|x| x.delay_ms = 0);
    // a reboot ends the session and closes the listener until the device is back
    run(&h, "/system reboot").await;
    for _ in 0..50 {
        if h.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(h.is_closed());
    assert!(tokio::net::TcpStream::connect(m.ssh).await.is_err());
    clock.advance(Duration::from_secs(6));
    f.tick();
    assert!(dev.is_ssh_reachable());
    let mut h = None;
    for _ in 0..50 {
        if let Ok(c) = ssh_connect(m).await {
            h = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut h = h.unwrap();
    assert!(
        h.authenticate_password(m.username.clone(), m.password.clone())
            .await
            .unwrap()
            .success()
    );
    // /ip service disable ssh closes the listener too
    let api = connect(m).await;
    api.run(Command::new("/ip/service/disable").attr("numbers", "ssh"))
        .await
        .unwrap();
    assert!(!dev.is_ssh_reachable());
    assert!(tokio::net::TcpStream::connect(m.ssh).await.is_err());
}

#[tokio::test]
async fn a_50kb_v6_config_exports_in_full_over_exec_and_file_plus_sftp() {
    let text = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/routeros-exports/01-v6-rb450gx4-capsman-hotspot-core.rsc"),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_717_243_200)));
    let mut opts = FleetOptions::new(1, clock);
    opts.exports = vec![text];
    let f = Fleet::start(opts).await.unwrap();
    let dev = f.device(0).unwrap();
    let mut script = String::from("/ip firewall address-list\n");
    for k in 0..600 {
        script.push_str(&format!(
            "add address=10.{}.{}.0/24 comment=\"bulk entry {k}\" list=bulk\n",
            k / 256,
            k % 256
        ));
    }
    dev.apply_out_of_band(&script).unwrap();
    let expected = dev.export(true);
    assert!(expected.len() > 50_000, "{}", expected.len());
    assert!(
        expected.contains("\r\n"),
        "the corpus file is CRLF and so is its export"
    );
    let m = &f.manifest()[0];
    let h = login(m).await;
    let out = run(&h, "/export").await;
    assert_eq!(out.len(), expected.len());
    assert!(out == expected);
    assert_eq!(run(&h, "/export file=big").await, "");
    let sf = sftp(&h).await;
    let data = download(&sf, "big.rsc").await;
    assert_eq!(data.len(), expected.len());
    assert!(data == expected.as_bytes());
}
