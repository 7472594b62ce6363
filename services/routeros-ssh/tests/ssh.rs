//! Integration tests: the SSH/SFTP client against devsim devices over loopback (v6 and v7),
//! host-key trust, both logins, bounded exec and transfers, faults and the address guard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use devsim::{Fleet, FleetOptions, ManifestEntry, SystemClock};
use rand::RngCore;
use routeros_ssh::{
    AddressGuard, Fingerprint, HostKeyPolicy, SshAuth, SshConfig, SshError, SshSession, Trust,
};

/// Two devices: 0 on RouterOS 7, 1 on RouterOS 6.
async fn fleet() -> Fleet {
    let mut opts = FleetOptions::new(2, Arc::new(SystemClock::new()));
    opts.v6_share = 0.5;
    Fleet::start(opts).await.unwrap()
}

/// One device loaded with the largest corpus export (RouterOS 6, about 46 KB).
async fn fleet_with_large_export() -> (Fleet, String) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/routeros-exports/04-v6-hap-verbose-full.rsc");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut opts = FleetOptions::new(1, Arc::new(SystemClock::new()));
    opts.exports = vec![text.clone()];
    (Fleet::start(opts).await.unwrap(), text)
}

fn pin(m: &ManifestEntry) -> HostKeyPolicy {
    m.ssh_host_key_sha256.parse().unwrap()
}

fn cfg_with(m: &ManifestEntry, auth: SshAuth, host_key: HostKeyPolicy) -> SshConfig {
    let mut c = SshConfig::new(m.ssh.ip().to_string(), m.username.clone(), auth, host_key)
        .with_port(m.ssh.port());
    c.connect_timeout = Duration::from_secs(5);
    c.command_timeout = Duration::from_secs(10);
    c
}

fn cfg(m: &ManifestEntry) -> SshConfig {
    cfg_with(m, SshAuth::password(m.password.clone()), pin(m))
}

async fn connect(m: &ManifestEntry) -> SshSession {
    SshSession::connect(&cfg(m)).await.unwrap()
}

/// What `/export` over SSH prints: v6 shows sensitive values unless told `hide-sensitive`,
/// v7 hides them unless told `show-sensitive` (ROUTEROS-NOTES §5.11).
fn expected_export(d: &devsim::Device, m: &ManifestEntry) -> String {
    d.export(m.version.starts_with('6'))
}

/// An export without its first line (`# <date> by RouterOS <version>`, which moves with the
/// clock).
fn body(export: &str) -> String {
    export
        .split_inclusive('\n')
        .skip_while(|l| !l.contains("by RouterOS"))
        .skip(1)
        .collect()
}

#[tokio::test]
async fn pinned_key_is_accepted_in_both_forms_and_tofu_reports_the_manifest_key() {
    let f = fleet().await;
    let m = &f.manifest()[0];
    let expected: Fingerprint = m.ssh_host_key_sha256.parse().unwrap();

    let s = connect(m).await;
    assert_eq!(s.host_key().trust, Trust::Pinned);
    assert_eq!(s.host_key().fingerprint(), expected);
    assert_eq!(s.host_key().algorithm, "ssh-ed25519");
    s.close().await;

    // the OpenSSH form of the same pin
    let openssh: HostKeyPolicy = expected.to_string().parse().unwrap();
    let s = SshSession::connect(&cfg_with(m, SshAuth::password(m.password.clone()), openssh))
        .await
        .unwrap();
    assert_eq!(s.host_key().trust, Trust::Pinned);
    s.close().await;

    // trust on first use: accepted and reported, the same key as the manifest's
    let s = SshSession::connect(&cfg_with(
        m,
        SshAuth::password(m.password.clone()),
        HostKeyPolicy::TrustOnFirstUse,
    ))
    .await
    .unwrap();
    assert_eq!(s.host_key().trust, Trust::FirstUse);
    assert_eq!(s.host_key().fingerprint().to_hex(), m.ssh_host_key_sha256);
    s.close().await;

    // another device has another key
    let other = &f.manifest()[1];
    assert_ne!(other.ssh_host_key_sha256, m.ssh_host_key_sha256);
}

#[tokio::test]
async fn wrong_pin_is_refused_before_login_with_a_clear_message() {
    let f = fleet().await;
    let m = &f.manifest()[0];
    let presented: Fingerprint = m.ssh_host_key_sha256.parse().unwrap();
    let mut wrong = presented;
    wrong.0[0] ^= 1;
    let e = SshSession::connect(&cfg_with(
        m,
        SshAuth::password(m.password.clone()),
        HostKeyPolicy::pinned(wrong),
    ))
    .await
    .unwrap_err();
    match &e {
        SshError::HostKeyMismatch {
            expected,
            presented: p,
            ..
        } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*p, presented);
        }
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "the device presented SSH host key {presented} but {wrong} is pinned"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("re-pin it (update the device's SSH host key)"),
        "{msg}"
    );
    assert!(!e.is_transient());
}

#[tokio::test]
async fn password_login_and_rejections() {
    let f = fleet().await;
    let m = &f.manifest()[1];
    let s = connect(m).await;
    assert!(!s.is_closed());
    s.close().await;

    let e = SshSession::connect(&cfg_with(m, SshAuth::password("wrong"), pin(m)))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SshError::AuthRejected { user, .. } if *user == m.username),
        "{e}"
    );
    assert!(!e.is_transient());

    // the reject_login fault refuses correct credentials too
    let d = f.device(1).unwrap();
    d.edit_faults(|x| x.reject_login = true);
    let e = SshSession::connect(&cfg(m)).await.unwrap_err();
    assert!(matches!(e, SshError::AuthRejected { .. }), "{e}");
    d.edit_faults(|x| x.reject_login = false);
    connect(m).await.close().await;
}

#[tokio::test]
async fn public_key_login_with_an_authorized_ed25519_key() {
    let f = fleet().await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap();

    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let private = russh::keys::PrivateKey::from(pair);
    let pem = private
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    let auth = SshAuth::public_key(&pem, None).unwrap();
    let SshAuth::PublicKey(key) = &auth else {
        panic!("not a key")
    };
    let line = key.public_key_openssh().unwrap();

    // not yet authorized
    let e = SshSession::connect(&cfg_with(m, auth.clone(), pin(m)))
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::AuthRejected { .. }), "{e}");

    d.authorize_ssh_key(&m.username, &line).unwrap();
    let s = SshSession::connect(&cfg_with(m, auth, pin(m)))
        .await
        .unwrap();
    let export = s.run("/export").await.unwrap();
    assert!(export.contains("/system identity"), "{export}");
    s.close().await;
}

#[tokio::test]
async fn exec_export_returns_the_whole_export_on_v6_and_v7() {
    let f = fleet().await;
    let manifest = f.manifest();
    assert!(
        manifest[0].version.starts_with('7'),
        "{}",
        manifest[0].version
    );
    assert!(
        manifest[1].version.starts_with('6'),
        "{}",
        manifest[1].version
    );
    for (i, m) in manifest.iter().enumerate() {
        let d = f.device(i).unwrap();
        let s = connect(m).await;
        let out = s.exec("/export").await.unwrap();
        assert_eq!(out.exit_status, Some(0));
        let text = out.text();
        assert_eq!(body(&text), body(&expected_export(d, m)), "device {i}");
        assert!(
            text.contains(&format!("by RouterOS {}", m.version)),
            "{text}"
        );
        // checked variant, terse form
        let terse = s.run("/export terse").await.unwrap();
        assert!(!terse.is_empty());
        // several commands at once on one connection
        let (a, b) = tokio::join!(s.run("/export"), s.run("/file print"));
        assert_eq!(body(&a.unwrap()), body(&text));
        b.unwrap();
        // a console error is a typed error from run, plain text from exec
        let e = s.run("exprot").await.unwrap_err();
        assert!(
            matches!(&e, SshError::Console { message, .. } if message.starts_with("bad command name")),
            "{e}"
        );
        let raw = s.exec("exprot").await.unwrap();
        assert_eq!(raw.exit_status, Some(0));
        assert!(raw.text().starts_with("bad command name"), "{}", raw.text());
        let e = s.run("/file remove nl-missing").await.unwrap_err();
        assert!(
            matches!(&e, SshError::Console { message, .. } if message.starts_with("no such item")),
            "{e}"
        );
        s.close().await;
    }
}

#[tokio::test]
async fn a_large_export_fits_the_default_bound_and_a_small_bound_is_a_typed_error() {
    let (f, _) = fleet_with_large_export().await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap();
    let s = connect(m).await;
    let text = s.run("/export").await.unwrap();
    assert!(text.len() > 40_000, "{}", text.len());
    assert_eq!(body(&text), body(&expected_export(d, m)));

    let mut small = cfg(m);
    small.max_output = 10_000;
    let s = SshSession::connect(&small).await.unwrap();
    let e = s.exec("/export").await.unwrap_err();
    assert!(
        matches!(e, SshError::OutputTooLarge { limit: 10_000, .. }),
        "{e}"
    );
    // the connection is still usable
    let files = s.run("/file print").await.unwrap();
    assert!(files.len() < 10_000);
    s.close().await;
}

#[tokio::test]
async fn sftp_round_trip_stat_remove_and_not_found() {
    let f = fleet().await;
    for (i, m) in f.manifest().iter().enumerate() {
        let d = f.device(i).unwrap();
        let s = connect(m).await;
        let sftp = s.sftp().await.unwrap();
        let mut bytes = vec![0u8; 200_000 + i];
        rand::thread_rng().fill_bytes(&mut bytes);
        sftp.write("netledger-test.bin", &bytes).await.unwrap();
        assert!(d.file_names().iter().any(|n| n == "netledger-test.bin"));
        assert_eq!(
            sftp.stat("netledger-test.bin").await.unwrap(),
            Some(bytes.len() as u64)
        );
        assert_eq!(sftp.read("netledger-test.bin").await.unwrap(), bytes);
        // overwrite with something shorter
        sftp.write("netledger-test.bin", b"short").await.unwrap();
        assert_eq!(sftp.read("netledger-test.bin").await.unwrap(), b"short");
        sftp.remove("netledger-test.bin").await.unwrap();
        assert_eq!(sftp.stat("netledger-test.bin").await.unwrap(), None);
        let e = sftp.read("netledger-test.bin").await.unwrap_err();
        assert!(
            matches!(&e, SshError::NotFound { path } if path == "netledger-test.bin"),
            "{e}"
        );
        let e = sftp.remove("netledger-test.bin").await.unwrap_err();
        assert!(matches!(e, SshError::NotFound { .. }), "{e}");
        sftp.close().await;
        s.close().await;
    }
}

#[tokio::test]
async fn backup_download_script_upload_and_file_size_bound() {
    let f = fleet().await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap();
    let s = connect(m).await;
    let sftp = s.sftp().await.unwrap();

    // a backup saved on the device, downloaded
    s.run("/system backup save name=nl-test dont-encrypt=yes")
        .await
        .unwrap();
    let listing = s.run("/file print").await.unwrap();
    assert!(listing.contains("nl-test.backup"), "{listing}");
    let backup = sftp.read("nl-test.backup").await.unwrap();
    assert!(!backup.is_empty());
    assert_eq!(
        sftp.stat("nl-test.backup").await.unwrap(),
        Some(backup.len() as u64)
    );

    // a change script uploaded and imported
    sftp.write("nl-change.rsc", b"/system identity set name=from-ssh\n")
        .await
        .unwrap();
    s.run("/import file-name=nl-change.rsc").await.unwrap();
    assert!(d.export(false).contains("name=from-ssh"));
    // a failing import is a typed error
    sftp.write("nl-bad.rsc", b"exprot\n").await.unwrap();
    let e = s.run("/import file-name=nl-bad.rsc").await.unwrap_err();
    assert!(matches!(e, SshError::Console { .. }), "{e}");
    s.run("/file remove nl-bad.rsc").await.unwrap();
    assert_eq!(sftp.stat("nl-bad.rsc").await.unwrap(), None);

    // a file larger than max_file is refused, not truncated
    let mut small = cfg(m);
    small.max_file = (backup.len() - 1) as u64;
    let s2 = SshSession::connect(&small).await.unwrap();
    let e = s2
        .sftp()
        .await
        .unwrap()
        .read("nl-test.backup")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SshError::FileTooLarge { size, limit, .. }
            if *size == backup.len() as u64 && *limit == small.max_file),
        "{e}"
    );
    s2.close().await;
    sftp.close().await;
    s.close().await;
}

#[tokio::test]
async fn unreachable_device_fails_to_connect_within_the_timeout() {
    let f = fleet().await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap();
    d.edit_faults(|x| x.unreachable = true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = cfg(m);
    c.connect_timeout = Duration::from_secs(2);
    let t0 = Instant::now();
    let e = SshSession::connect(&c).await.unwrap_err();
    assert!(
        matches!(e, SshError::Connect { .. } | SshError::Timeout { .. }),
        "{e}"
    );
    assert!(e.is_transient());
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    d.edit_faults(|x| x.unreachable = false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    connect(m).await.close().await;
}

#[tokio::test]
async fn a_peer_that_never_speaks_ssh_times_out_the_connect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut c = SshConfig::new(
        addr.ip().to_string(),
        "admin",
        SshAuth::password("x"),
        HostKeyPolicy::TrustOnFirstUse,
    )
    .with_port(addr.port());
    c.connect_timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let e = SshSession::connect(&c).await.unwrap_err();
    assert!(
        matches!(&e, SshError::Timeout { what, after } if what.starts_with("connecting to") && *after == c.connect_timeout),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    hold.abort();
}

#[tokio::test]
async fn a_slow_device_times_out_commands_and_sftp_requests() {
    let f = fleet().await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap();
    let mut c = cfg(m);
    c.command_timeout = Duration::from_millis(300);
    let s = SshSession::connect(&c).await.unwrap();
    let sftp = s.sftp().await.unwrap();
    d.edit_faults(|x| x.delay_ms = 1_500);
    let t0 = Instant::now();
    let e = s.exec("/export").await.unwrap_err();
    assert!(
        matches!(&e, SshError::Timeout { after, .. } if *after == c.command_timeout),
        "{e}"
    );
    assert!(e.is_transient());
    assert!(
        t0.elapsed() < Duration::from_millis(1_400),
        "{:?}",
        t0.elapsed()
    );
    let e = sftp.stat("anything").await.unwrap_err();
    assert!(matches!(e, SshError::Timeout { .. }), "{e}");
    // an explicit, longer timeout outlasts the delay
    let out = s
        .exec_with_timeout("/export", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!out.stdout.is_empty());
    d.edit_faults(|x| x.delay_ms = 0);
    s.close().await;
}

#[tokio::test]
async fn the_address_guard_refuses_before_connecting() {
    // a listener of our own: the refused connect must never reach it
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let no_loopback = AddressGuard::new(|a| {
        if a.ip().is_loopback() {
            Err(format!("{} is a loopback address", a.ip()))
        } else {
            Ok(())
        }
    });
    let c = SshConfig::new(
        "localhost",
        "admin",
        SshAuth::password("x"),
        HostKeyPolicy::TrustOnFirstUse,
    )
    .with_port(addr.port())
    .with_address_guard(no_loopback.clone());
    let e = SshSession::connect(&c).await.unwrap_err();
    assert!(
        matches!(&e, SshError::AddressRefused { reason, .. } if reason.contains("loopback")),
        "{e}"
    );
    assert!(!e.is_transient());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err(),
        "a connection was attempted"
    );

    // a guard that allows the address lets the session through
    let f = fleet().await;
    let m = &f.manifest()[0];
    let s = SshSession::connect(&cfg(m).with_address_guard(AddressGuard::new(|_| Ok(()))))
        .await
        .unwrap();
    s.close().await;
    let e = SshSession::connect(&cfg(m).with_address_guard(no_loopback))
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::AddressRefused { .. }), "{e}");
}

#[tokio::test]
async fn a_closed_session_fails_further_commands() {
    let f = fleet().await;
    let m = &f.manifest()[0];
    let s = connect(m).await;
    s.close().await;
    let t0 = Instant::now();
    while !s.is_closed() && t0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = s.exec("/export").await.unwrap_err();
    assert!(
        matches!(e, SshError::Channel { .. } | SshError::Timeout { .. }),
        "{e}"
    );
}
