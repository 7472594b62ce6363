//! Client tests against a tiny scripted RouterOS server built on the same codec, over real
//! loopback sockets (plain TCP and TLS).

// Test helpers outside `#[test]` functions are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use routeros::proto::{Attrs, Command, Reply, TrapCategory};
use routeros::tls::{Fingerprint, TlsPolicy, Trust};
use routeros::{Client, CodecError, Config, Decoder, Error, Limits, Password, ProtoError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const USER: &str = "admin";
const PASSWORD: &str = "secret";

/// The router side of one connection.
struct Conn<S> {
    stream: S,
    decoder: Decoder,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            decoder: Decoder::new(Limits::DEFAULT),
        }
    }

    /// Next command, or `None` when the client hung up.
    async fn recv(&mut self) -> Option<Command> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(s) = self.decoder.next_sentence().unwrap() {
                return Some(Command::from_sentence(&s).unwrap());
            }
            let n = self.stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    async fn expect(&mut self, path: &str) -> Command {
        let cmd = self.recv().await.expect("client hung up");
        assert_eq!(cmd.path(), path, "{cmd:?}");
        cmd
    }

    async fn send(&mut self, reply: Reply) {
        self.send_raw(&reply.to_bytes().unwrap()).await;
    }

    /// Replies to `cmd` (with its tag).
    async fn answer(&mut self, cmd: &Command, reply: Reply) {
        self.send(reply.with_tag(cmd.tag().cloned())).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        // The client may already be gone in failure tests; that is fine.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Accepts the 6.43+ plain login with the test credentials.
    async fn login(&mut self) {
        let cmd = self.expect("/login").await;
        assert_eq!(cmd.attrs().get_str("name"), Some(USER));
        assert_eq!(cmd.attrs().get_str("password"), Some(PASSWORD));
        self.send(Reply::done()).await;
    }
}

/// Accepts one connection and runs `script` on it.
async fn serve<F, Fut>(script: F) -> (SocketAddr, JoinHandle<()>)
where
    F: FnOnce(Conn<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(Conn::new(stream)).await;
    });
    (addr, handle)
}

fn config(addr: SocketAddr) -> Config {
    let mut c =
        Config::new(addr.ip().to_string(), USER, Password::new(PASSWORD)).with_port(addr.port());
    c.connect_timeout = Duration::from_secs(5);
    c.command_timeout = Duration::from_secs(5);
    c
}

async fn connect(addr: SocketAddr) -> Client {
    Client::connect(&config(addr)).await.unwrap()
}

#[tokio::test]
async fn plain_login_then_a_command() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let cmd = c.expect("/system/identity/print").await;
        assert!(cmd.tag().is_some(), "client must tag commands");
        c.answer(&cmd, Reply::re(Attrs::new().with("name", "R1")))
            .await;
        c.answer(&cmd, Reply::done()).await;
    })
    .await;
    let client = connect(addr).await;
    let r = client
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 1);
    assert_eq!(r.rows[0].get_str("name"), Some("R1"));
    server.await.unwrap();
}

#[tokio::test]
async fn login_rejected_carries_the_router_message() {
    let (addr, _server) = serve(|mut c| async move {
        c.expect("/login").await;
        c.send(Reply::trap(None, "invalid user name or password (6)"))
            .await;
        c.send(Reply::done()).await;
    })
    .await;
    let err = Client::connect(&config(addr)).await.unwrap_err();
    match err {
        Error::LoginRejected { user, message } => {
            assert_eq!(user, USER);
            assert_eq!(message, "invalid user name or password (6)");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn legacy_challenge_login() {
    let (addr, server) = serve(|mut c| async move {
        // A pre-6.43 router ignores the credentials and answers with a challenge.
        c.expect("/login").await;
        c.send(Reply::done_ret("ebddd18e4ec2e3e4f0e9ba7c3f2c7d5e"))
            .await;
        let cmd = c.expect("/login").await;
        assert_eq!(cmd.attrs().get_str("name"), Some(USER));
        // hashlib.md5(b"\x00" + b"secret" + bytes.fromhex("ebdd...7d5e")).hexdigest()
        if cmd.attrs().get_str("response") == Some("0013fb1453b8562d73eb3d361308836755") {
            c.send(Reply::done()).await;
        } else {
            c.send(Reply::trap(None, "cannot log in")).await;
            c.send(Reply::done()).await;
        }
        let cmd = c.expect("/system/identity/print").await;
        c.answer(&cmd, Reply::done()).await;
    })
    .await;
    let client = connect(addr).await;
    client
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap();
    server.await.unwrap();

    // And a wrong password is rejected with the router's text.
    let (addr, _server) = serve(|mut c| async move {
        c.expect("/login").await;
        c.send(Reply::done_ret("ebddd18e4ec2e3e4f0e9ba7c3f2c7d5e"))
            .await;
        c.expect("/login").await;
        c.send(Reply::trap(None, "cannot log in")).await;
        c.send(Reply::done()).await;
    })
    .await;
    let mut cfg = config(addr);
    cfg.password = Password::new("wrong");
    assert!(matches!(
        Client::connect(&cfg).await,
        Err(Error::LoginRejected { message, .. }) if message == "cannot log in"
    ));
}

#[tokio::test]
async fn many_concurrent_commands_are_routed_by_tag() {
    const N: usize = 50;
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let mut cmds = Vec::new();
        for _ in 0..N {
            cmds.push(c.expect("/echo").await);
        }
        // Answer in reverse order, interleaving the rows of different commands.
        for cmd in cmds.iter().rev() {
            let n = cmd.attrs().get_str("n").unwrap().to_owned();
            c.answer(cmd, Reply::re(Attrs::new().with("n", &n))).await;
        }
        for cmd in &cmds {
            let n = cmd.attrs().get_str("n").unwrap().to_owned();
            c.answer(cmd, Reply::re(Attrs::new().with("n", &n))).await;
            c.answer(cmd, Reply::done_ret(&n)).await;
        }
    })
    .await;
    let client = connect(addr).await;
    let runs = (0..N).map(|i| {
        let client = client.clone();
        async move {
            let r = client
                .run(Command::new("/echo").attr("n", i.to_string()))
                .await
                .unwrap();
            (i, r)
        }
    });
    for (i, r) in futures::future::join_all(runs).await {
        let want = i.to_string();
        assert_eq!(r.rows.len(), 2);
        assert!(r.rows.iter().all(|row| row.get_str("n") == Some(&want)));
        assert_eq!(r.ret().map(|b| &b[..]), Some(want.as_bytes()));
    }
    server.await.unwrap();
}

#[tokio::test]
async fn stream_rows_then_cancel() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let listen = c.expect("/ip/address/listen").await;
        for i in 0..3 {
            c.answer(
                &listen,
                Reply::re(Attrs::new().with(".id", format!("*{i}"))),
            )
            .await;
        }
        let cancel = c.expect("/cancel").await;
        let listen_tag = listen.tag().unwrap().as_str();
        assert_eq!(cancel.attrs().get_str("tag"), Some(listen_tag));
        // Order observed on 7.24 (ROUTEROS-NOTES §1.5): trap, empty, then the two !done,
        // with a late row still in between.
        c.answer(&listen, Reply::re(Attrs::new().with(".id", "*late")))
            .await;
        c.answer(
            &listen,
            Reply::trap(Some(TrapCategory::Interrupted), "interrupted"),
        )
        .await;
        c.answer(&listen, Reply::empty()).await;
        c.answer(&cancel, Reply::done()).await;
        c.answer(&listen, Reply::done()).await;
        // A stray for the finished tag must be ignored, and the connection still work.
        c.answer(&listen, Reply::re(Attrs::new().with(".id", "*stray")))
            .await;
        let next = c.expect("/system/identity/print").await;
        c.answer(&next, Reply::done()).await;
    })
    .await;
    let client = connect(addr).await;
    let mut stream = client.stream(Command::new("/ip/address/listen")).unwrap();
    for i in 0..3 {
        let row = stream.next().await.unwrap().unwrap();
        assert_eq!(row.get_str(".id"), Some(format!("*{i}").as_str()));
    }
    stream.cancel().await.unwrap();
    client
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn stream_ends_at_done_and_dropping_one_cancels_it() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let a = c.expect("/log/print").await;
        c.answer(&a, Reply::re(Attrs::new().with("message", "m1")))
            .await;
        c.answer(&a, Reply::done()).await;
        let b = c.expect("/interface/listen").await;
        c.answer(&b, Reply::re(Attrs::new().with("name", "ether1")))
            .await;
        // The client drops the stream: it must cancel exactly that tag.
        let cancel = c.expect("/cancel").await;
        assert_eq!(
            cancel.attrs().get_str("tag"),
            Some(b.tag().unwrap().as_str())
        );
    })
    .await;
    let client = connect(addr).await;
    let rows: Vec<_> = client
        .stream(Command::new("/log/print").flag("follow"))
        .unwrap()
        .collect()
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].as_ref().unwrap().get_str("message"), Some("m1"));

    let mut s = client.stream(Command::new("/interface/listen")).unwrap();
    s.next().await.unwrap().unwrap();
    drop(s);
    server.await.unwrap();
}

#[tokio::test]
async fn traps_fail_the_command_not_the_connection() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let add = c.expect("/ip/address/add").await;
        c.answer(
            &add,
            Reply::trap(
                Some(TrapCategory::ArgumentValue),
                "input does not match any value of interface",
            ),
        )
        .await;
        c.answer(&add, Reply::done()).await;
        let bad = c.expect("/ip/adress/print").await;
        c.answer(
            &bad,
            Reply::trap(
                Some(TrapCategory::MissingItemOrCommand),
                "no such command or directory (adress)",
            ),
        )
        .await;
        c.answer(&bad, Reply::trap(None, "no such command prefix"))
            .await;
        c.answer(&bad, Reply::done()).await;
        let ok = c.expect("/system/identity/print").await;
        c.answer(&ok, Reply::done()).await;
        // Dropping the last client handle hangs up cleanly.
        assert!(c.recv().await.is_none());
    })
    .await;
    let client = connect(addr).await;
    match client.run(Command::new("/ip/address/add")).await {
        Err(Error::Trap {
            command,
            trap,
            more,
        }) => {
            assert_eq!(command, "/ip/address/add");
            assert_eq!(trap.category, Some(TrapCategory::ArgumentValue));
            assert_eq!(trap.message, "input does not match any value of interface");
            assert!(more.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match client.run(Command::new("/ip/adress/print")).await {
        Err(Error::Trap { trap, more, .. }) => {
            assert_eq!(trap.category, Some(TrapCategory::MissingItemOrCommand));
            assert_eq!(more.len(), 1);
            assert_eq!(more[0].message, "no such command prefix");
        }
        other => panic!("{other:?}"),
    }
    client
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap();
    assert!(!client.is_closed());
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn fatal_fails_everything_pending_and_later() {
    let (addr, _server) = serve(|mut c| async move {
        c.login().await;
        c.expect("/a").await;
        c.expect("/b").await;
        c.send(Reply::fatal("session terminated on request")).await;
    })
    .await;
    let client = connect(addr).await;
    let (a, b) = tokio::join!(
        client.run(Command::new("/a")),
        client.run(Command::new("/b"))
    );
    for r in [a, b] {
        assert!(
            matches!(&r, Err(Error::Fatal { reason }) if reason == "session terminated on request"),
            "{r:?}"
        );
    }
    assert!(client.is_closed());
    assert!(matches!(
        client.run(Command::new("/c")).await,
        Err(Error::Fatal { .. })
    ));
}

#[tokio::test]
async fn dropped_connection_fails_pending_commands_and_streams() {
    let (addr, _server) = serve(|mut c| async move {
        c.login().await;
        c.expect("/slow").await;
        c.expect("/listen").await;
        // Hang up without answering.
    })
    .await;
    let client = connect(addr).await;
    let mut stream = client.stream(Command::new("/slow")).unwrap();
    let run = client.run(Command::new("/listen"));
    let (item, run) = tokio::join!(stream.next(), run);
    assert!(
        matches!(item, Some(Err(Error::ConnectionClosed { .. }))),
        "{item:?}"
    );
    assert!(
        matches!(run, Err(Error::ConnectionClosed { .. })),
        "{run:?}"
    );
    assert!(stream.next().await.is_none());
    assert!(client.is_closed());
}

#[tokio::test]
async fn slow_reply_times_out_and_is_cancelled_on_the_router() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let slow = c.expect("/slow").await;
        let cancel = c.expect("/cancel").await;
        assert_eq!(
            cancel.attrs().get_str("tag"),
            Some(slow.tag().unwrap().as_str())
        );
        c.answer(
            &slow,
            Reply::trap(Some(TrapCategory::Interrupted), "interrupted"),
        )
        .await;
        c.answer(&cancel, Reply::done()).await;
        c.answer(&slow, Reply::done()).await;
        let next = c.expect("/fast").await;
        c.answer(&next, Reply::done()).await;
    })
    .await;
    let client = connect(addr).await;
    let started = tokio::time::Instant::now();
    let r = client
        .run_with_timeout(Command::new("/slow"), Duration::from_millis(100))
        .await;
    assert!(
        matches!(&r, Err(Error::Timeout { command, after })
            if command == "/slow" && *after == Duration::from_millis(100)),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    client.run(Command::new("/fast")).await.unwrap();
    server.await.unwrap();
}

/// A "device" that answers one command with `rows` rows of `value` each and never ends the
/// reply by itself: only a `/cancel` stops it (then it ends the command as RouterOS does and
/// serves `/fast`).
async fn serve_endless(rows: usize, value: Vec<u8>) -> (SocketAddr, JoinHandle<()>) {
    serve(move |mut c| async move {
        c.login().await;
        let print = c.expect("/flood/print").await;
        for i in 0..rows {
            let row = Attrs::new()
                .with(".id", format!("*{i:X}"))
                .with("v", &value);
            c.answer(&print, Reply::re(row)).await;
        }
        let cancel = c.expect("/cancel").await;
        assert_eq!(
            cancel.attrs().get_str("tag"),
            Some(print.tag().unwrap().as_str())
        );
        c.answer(
            &print,
            Reply::trap(Some(TrapCategory::Interrupted), "interrupted"),
        )
        .await;
        c.answer(&print, Reply::done()).await;
        c.answer(&cancel, Reply::done()).await;
        let next = c.expect("/fast").await;
        c.answer(&next, Reply::done()).await;
    })
    .await
}

fn limited(addr: SocketAddr, max_rows: usize, max_bytes: usize) -> Config {
    let mut c = config(addr);
    c.reply_limits = routeros::ReplyLimits {
        max_rows,
        max_bytes,
        max_file_bytes: 1 << 20,
    };
    c
}

#[tokio::test]
async fn a_reply_past_the_row_limit_is_cancelled_not_collected() {
    let (addr, server) = serve_endless(250, b"x".to_vec()).await;
    let client = Client::connect(&limited(addr, 100, 1 << 20)).await.unwrap();
    let r = client.run(Command::new("/flood/print")).await;
    assert!(
        matches!(&r, Err(Error::ReplyTooLarge { command, limit })
            if command == "/flood/print" && limit == "100 rows"),
        "{r:?}"
    );
    // The connection stays usable: the flood was cancelled on the router.
    client.run(Command::new("/fast")).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_reply_past_the_byte_limit_is_cancelled_not_collected() {
    // Three rows of 400 KB each: the third passes 1 MiB.
    let (addr, server) = serve_endless(3, vec![b'y'; 400_000]).await;
    let client = Client::connect(&limited(addr, 1000, 1 << 20))
        .await
        .unwrap();
    let r = client.run(Command::new("/flood/print")).await;
    assert!(
        matches!(&r, Err(Error::ReplyTooLarge { limit, .. }) if limit == "1048576 bytes"),
        "{r:?}"
    );
    client.run(Command::new("/fast")).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_file_past_the_file_limit_is_refused_and_still_removed() {
    // 7.13+: `/file/read` in 32 KiB chunks; the device offers 70,000 bytes, the client
    // accepts 50,000: it stops after the second chunk and removes the file.
    let text: Vec<u8> = vec![b'#'; 70_000];
    let (addr, server) = serve(move |mut c| async move {
        c.login().await;
        let res = c.expect("/system/resource/print").await;
        c.answer(&res, Reply::re(resource_row("7.15.2 (stable)")))
            .await;
        c.answer(&res, Reply::done()).await;
        let export = c.expect("/export").await;
        c.answer(&export, Reply::done()).await;
        let print = c.expect("/file/print").await;
        let row = Attrs::new()
            .with(".id", "*2A")
            .with("name", "netledger-export.rsc")
            .with("size", text.len().to_string());
        c.answer(&print, Reply::re(row)).await;
        c.answer(&print, Reply::done()).await;
        let mut offset = 0;
        loop {
            let cmd = c.recv().await.unwrap();
            if cmd.path() == "/file/remove" {
                assert_eq!(cmd.attrs().get_str(".id"), Some("*2A"));
                c.answer(&cmd, Reply::done()).await;
                break;
            }
            assert_eq!(cmd.path(), "/file/read");
            let size: usize = cmd.attrs().get_str("chunk-size").unwrap().parse().unwrap();
            let chunk = &text[offset..(offset + size).min(text.len())];
            offset += chunk.len();
            c.answer(&cmd, Reply::re(Attrs::new().with("data", chunk)))
                .await;
            c.answer(&cmd, Reply::done()).await;
        }
        assert!(offset < text.len(), "the client read the whole file");
    })
    .await;
    let mut cfg = config(addr);
    cfg.reply_limits.max_file_bytes = 50_000;
    let client = Client::connect(&cfg).await.unwrap();
    let r = client
        .export(&routeros::menus::ExportOptions::default())
        .await;
    assert!(
        matches!(&r, Err(Error::ReplyTooLarge { limit, .. }) if limit == "50000 bytes"),
        "{:?}",
        r.as_ref().map(|b| b.len())
    );
    server.await.unwrap();
}

#[tokio::test]
async fn corrupted_frame_is_a_typed_codec_error() {
    let (addr, _server) = serve(|mut c| async move {
        c.login().await;
        c.expect("/x").await;
        c.send_raw(&[0x03, b'!', b'r', b'e', 0xF8, 0x00]).await;
        // Keep the socket open: the error must come from the bytes, not from EOF.
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let client = connect(addr).await;
    let r = client.run(Command::new("/x")).await;
    assert!(
        matches!(
            r,
            Err(Error::Codec {
                source: CodecError::ReservedControlByte { byte: 0xF8 }
            })
        ),
        "{r:?}"
    );
    assert!(client.is_closed());
}

#[tokio::test]
async fn oversized_word_is_refused_by_the_limits() {
    let (addr, _server) = serve(|mut c| async move {
        c.login().await;
        let cmd = c.expect("/file/print").await;
        c.answer(
            &cmd,
            Reply::re(Attrs::new().with("contents", vec![b'x'; 5000])),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut cfg = config(addr);
    cfg.limits.max_word_len = 1024;
    let client = Client::connect(&cfg).await.unwrap();
    let r = client.run(Command::new("/file/print")).await;
    assert!(
        matches!(
            r,
            Err(Error::Codec {
                source: CodecError::WordTooLong { max: 1024, .. }
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn malformed_tagged_reply_fails_only_its_command() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let x = c.expect("/x").await;
        let tag = x.tag().unwrap().as_str().to_owned();
        let mut buf = BytesMut::new();
        routeros::codec::encode_sentence(
            &[&b"!bogus"[..], format!(".tag={tag}").as_bytes()],
            &mut buf,
        )
        .unwrap();
        c.send_raw(&buf).await;
        let y = c.expect("/y").await;
        c.answer(&y, Reply::done()).await;
    })
    .await;
    let client = connect(addr).await;
    let r = client.run(Command::new("/x")).await;
    assert!(
        matches!(
            r,
            Err(Error::Protocol {
                source: ProtoError::UnknownReply { .. }
            })
        ),
        "{r:?}"
    );
    client.run(Command::new("/y")).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn close_says_quit_and_fails_later_commands() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        c.expect("/ip/address/listen").await;
        c.expect("/quit").await;
        c.send(Reply::fatal("session terminated on request")).await;
        // The client shuts down its side after the router hangs up.
        assert!(c.recv().await.is_none());
    })
    .await;
    let client = connect(addr).await;
    let mut stream = client.stream(Command::new("/ip/address/listen")).unwrap();
    client.close().await;
    assert!(matches!(
        stream.next().await,
        Some(Err(Error::ConnectionClosed { .. }))
    ));
    assert!(matches!(
        client.run(Command::new("/x")).await,
        Err(Error::ConnectionClosed { .. })
    ));
    drop(stream);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connect_refused_is_typed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let r = Client::connect(&config(addr)).await;
    assert!(
        matches!(&r, Err(Error::Connect { source, .. })
            if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{r:?}"
    );
}

#[tokio::test]
async fn stalled_tls_handshake_hits_the_connect_timeout() {
    // Accepts TCP but never answers the ClientHello.
    let (addr, _server) = serve(|c| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(c);
    })
    .await;
    let mut cfg = config(addr).with_tls(TlsPolicy::TrustOnFirstUse);
    cfg.connect_timeout = Duration::from_millis(200);
    let r = Client::connect(&cfg).await;
    assert!(
        matches!(&r, Err(Error::ConnectTimeout { after, .. }) if *after == Duration::from_millis(200)),
        "{r:?}"
    );
}

#[tokio::test]
async fn login_that_never_answers_times_out() {
    let (addr, _server) = serve(|mut c| async move {
        c.expect("/login").await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let mut cfg = config(addr);
    cfg.command_timeout = Duration::from_millis(200);
    let r = Client::connect(&cfg).await;
    assert!(
        matches!(&r, Err(Error::Timeout { command, .. }) if command == "/login"),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS

struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    /// DER of the CA that issued the leaf (`None` when self-signed).
    ca: Option<CertificateDer<'static>>,
}

impl TlsIdentity {
    /// A self-signed certificate like RouterOS generates: its name matches nothing.
    fn self_signed() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["not-the-host.invalid".into()]).unwrap();
        Self {
            chain: vec![ck.cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()),
            ca: None,
        }
    }

    /// A leaf for `name` issued by a fresh CA.
    fn ca_issued(name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        Self {
            chain: vec![leaf.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
            ca: Some(ca.der().clone()),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.chain[0])
    }
}

/// Serves one TLS connection with `identity`, then runs `script` on it.
async fn serve_tls<F, Fut>(identity: &TlsIdentity, script: F) -> SocketAddr
where
    F: FnOnce(Conn<tokio_rustls::server::TlsStream<TcpStream>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        identity.chain.clone(),
        PrivateKeyDer::Pkcs8(identity.key.clone_key()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // A client that rejects the certificate aborts the handshake; that ends the script.
        if let Ok(tls) = acceptor.accept(tcp).await {
            script(Conn::new(tls)).await;
        }
    });
    addr
}

async fn tls_identity_print<S: AsyncRead + AsyncWrite + Unpin>(mut c: Conn<S>) {
    c.login().await;
    let cmd = c.expect("/system/identity/print").await;
    c.answer(&cmd, Reply::re(Attrs::new().with("name", "tls-router")))
        .await;
    c.answer(&cmd, Reply::done()).await;
}

#[tokio::test]
async fn tls_pinned_certificate_matches_despite_hostname() {
    let id = TlsIdentity::self_signed();
    let addr = serve_tls(&id, tls_identity_print).await;
    let cfg = config(addr).with_tls(TlsPolicy::PinnedSha256(id.fingerprint().0));
    let client = Client::connect(&cfg).await.unwrap();
    let peer = client.peer_certificate().unwrap();
    assert_eq!(peer.fingerprint, id.fingerprint());
    assert_eq!(peer.trust, Trust::Pinned);
    let r = client
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap();
    assert_eq!(r.rows[0].get_str("name"), Some("tls-router"));
}

#[tokio::test]
async fn tls_pin_mismatch_is_refused_with_both_fingerprints() {
    let id = TlsIdentity::self_signed();
    let addr = serve_tls(&id, tls_identity_print).await;
    let wrong = [0x42; 32];
    let cfg = config(addr).with_tls(TlsPolicy::PinnedSha256(wrong));
    match Client::connect(&cfg).await {
        Err(Error::PinMismatch { expected, actual }) => {
            assert_eq!(expected, Fingerprint(wrong));
            assert_eq!(actual, id.fingerprint());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tls_trust_on_first_use_reports_the_fingerprint() {
    let id = TlsIdentity::self_signed();
    let addr = serve_tls(&id, tls_identity_print).await;
    let cfg = config(addr).with_tls(TlsPolicy::TrustOnFirstUse);
    let client = Client::connect(&cfg).await.unwrap();
    let peer = *client.peer_certificate().unwrap();
    assert_eq!(peer.trust, Trust::FirstUse);
    assert_eq!(peer.fingerprint, id.fingerprint());
    client
        .run(Command::new("/system/identity/print"))
        .await
        .unwrap();

    // The recorded fingerprint pins the next connection.
    let addr = serve_tls(&id, tls_identity_print).await;
    let cfg = config(addr).with_tls(TlsPolicy::PinnedSha256(peer.fingerprint.0));
    assert_eq!(
        Client::connect(&cfg)
            .await
            .unwrap()
            .peer_certificate()
            .unwrap()
            .trust,
        Trust::Pinned
    );
}

#[tokio::test]
async fn tls_ca_verification_checks_chain_and_name() {
    let id = TlsIdentity::ca_issued("router.example");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(id.ca.clone().unwrap()).unwrap();

    let addr = serve_tls(&id, tls_identity_print).await;
    let mut cfg = config(addr).with_tls(TlsPolicy::Ca(roots.clone()));
    cfg.tls_server_name = Some("router.example".into());
    let client = Client::connect(&cfg).await.unwrap();
    assert_eq!(client.peer_certificate().unwrap().trust, Trust::Ca);

    // Wrong name: refused.
    let addr = serve_tls(&id, tls_identity_print).await;
    let mut cfg = config(addr).with_tls(TlsPolicy::Ca(roots.clone()));
    cfg.tls_server_name = Some("other.example".into());
    assert!(matches!(
        Client::connect(&cfg).await,
        Err(Error::Tls { .. })
    ));

    // A self-signed certificate not issued by the root: refused, even with a matching name.
    let ck = rcgen::generate_simple_self_signed(vec!["router.example".into()]).unwrap();
    let other = TlsIdentity {
        chain: vec![ck.cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()),
        ca: None,
    };
    let addr = serve_tls(&other, tls_identity_print).await;
    let mut cfg = config(addr).with_tls(TlsPolicy::Ca(roots));
    cfg.tls_server_name = Some("router.example".into());
    assert!(matches!(
        Client::connect(&cfg).await,
        Err(Error::Tls { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Typed helpers

fn resource_row(version: &str) -> Attrs {
    [
        ("uptime", "3d02:04:05"),
        ("version", version),
        ("cpu-load", "7"),
        ("free-memory", "1000"),
        ("total-memory", "2000"),
        ("free-hdd-space", "3000"),
        ("total-hdd-space", "4000"),
        ("board-name", "CHR"),
        ("architecture-name", "x86_64"),
    ]
    .into_iter()
    .collect()
}

/// Serves the export flow; returns what the script saw of the `/export` command.
async fn serve_export(
    version: &'static str,
    text: Vec<u8>,
    reported_size: Option<usize>,
) -> (SocketAddr, JoinHandle<Command>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut c = Conn::new(stream);
        c.login().await;
        let res = c.expect("/system/resource/print").await;
        c.answer(&res, Reply::re(resource_row(version))).await;
        c.answer(&res, Reply::done()).await;
        let export = c.expect("/export").await;
        c.answer(&export, Reply::done()).await;
        let name = format!("{}.rsc", export.attrs().get_str("file").unwrap());
        // The file is found on the second look (written asynchronously).
        for found in [false, true] {
            let print = c.expect("/file/print").await;
            assert_eq!(
                print.queries(),
                &[routeros::Query::eq("name", &name)],
                "looks the file up by exact name"
            );
            if found {
                let row = Attrs::new()
                    .with(".id", "*2A")
                    .with("name", &name)
                    .with("type", "script")
                    .with("size", text.len().to_string());
                c.answer(&print, Reply::re(row)).await;
            } else {
                c.answer(&print, Reply::empty()).await;
            }
            c.answer(&print, Reply::done()).await;
        }
        let v: routeros::Version = version.parse().unwrap();
        if v.at_least(7, 13) {
            let mut offset = 0;
            loop {
                let read = c.expect("/file/read").await;
                assert_eq!(read.attrs().get_str("file"), Some(name.as_str()));
                assert_eq!(
                    read.attrs().get_str("offset"),
                    Some(offset.to_string().as_str())
                );
                let size: usize = read.attrs().get_str("chunk-size").unwrap().parse().unwrap();
                let chunk = &text[offset..(offset + size).min(text.len())];
                offset += chunk.len();
                c.answer(&read, Reply::re(Attrs::new().with("data", chunk)))
                    .await;
                c.answer(&read, Reply::done()).await;
                if chunk.len() < size {
                    break;
                }
            }
        } else {
            let print = c.expect("/file/print").await;
            let row = Attrs::new()
                .with("name", &name)
                .with("size", reported_size.unwrap_or(text.len()).to_string())
                .with("contents", &text);
            c.answer(&print, Reply::re(row)).await;
            c.answer(&print, Reply::done()).await;
        }
        let remove = c.expect("/file/remove").await;
        assert_eq!(remove.attrs().get_str(".id"), Some("*2A"));
        c.answer(&remove, Reply::done()).await;
        export
    });
    (addr, handle)
}

#[tokio::test]
async fn export_on_v7_reads_the_file_in_chunks_and_hides_secrets() {
    // 70,000 bytes, not UTF-8 everywhere: three chunks, bytes preserved.
    let text: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (addr, server) = serve_export("7.15.2 (stable)", text.clone(), None).await;
    let client = connect(addr).await;
    let got = client
        .export(&routeros::menus::ExportOptions::default())
        .await
        .unwrap();
    assert_eq!(&got[..], &text[..]);
    let export = server.await.unwrap();
    assert_eq!(export.attrs().get_str("file"), Some("netledger-export"));
    // v7 hides sensitive values by default: no flag either way.
    assert!(!export.attrs().contains("show-sensitive"));
    assert!(!export.attrs().contains("hide-sensitive"));
}

#[tokio::test]
async fn export_on_v6_uses_contents_and_hide_sensitive() {
    let text =
        b"# jan/02/1970 00:00:00 by RouterOS 6.49.7\n/system identity\nset name=R1\n".to_vec();
    let (addr, server) = serve_export("6.49.7 (long-term)", text.clone(), None).await;
    let client = connect(addr).await;
    let opts = routeros::menus::ExportOptions {
        terse: true,
        ..Default::default()
    };
    let got = client.export(&opts).await.unwrap();
    assert_eq!(&got[..], &text[..]);
    let export = server.await.unwrap();
    assert_eq!(export.attrs().get_str("hide-sensitive"), Some(""));
    assert_eq!(export.attrs().get_str("terse"), Some(""));
}

#[tokio::test]
async fn export_refuses_truncated_contents_and_still_removes_the_file() {
    let text = vec![b'#'; 4096];
    let (addr, server) = serve_export("6.48 (stable)", text, Some(9000)).await;
    let client = connect(addr).await;
    let r = client
        .export(&routeros::menus::ExportOptions::default())
        .await;
    assert!(
        matches!(&r, Err(Error::UnexpectedReply { detail, .. }) if detail.contains("4096 of 9000")),
        "{r:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn helpers_parse_rows_and_handle_missing_menus() {
    let (addr, server) = serve(|mut c| async move {
        c.login().await;
        let cmd = c.expect("/system/resource/print").await;
        c.answer(&cmd, Reply::re(resource_row("7.18 (stable)")))
            .await;
        c.answer(&cmd, Reply::done()).await;
        // CHR has no routerboard menu.
        let cmd = c.expect("/system/routerboard/print").await;
        c.answer(
            &cmd,
            Reply::trap(
                Some(TrapCategory::MissingItemOrCommand),
                "no such command or directory (routerboard)",
            ),
        )
        .await;
        c.answer(&cmd, Reply::trap(None, "no such command prefix"))
            .await;
        c.answer(&cmd, Reply::done()).await;
        let cmd = c.expect("/system/scheduler/add").await;
        assert_eq!(cmd.attrs().get_str("interval"), Some("1h30m"));
        assert_eq!(cmd.attrs().get_str("name"), Some("nl-change-1"));
        c.answer(&cmd, Reply::done_ret("*1A")).await;
        let cmd = c.expect("/system/scheduler/disable").await;
        assert_eq!(cmd.attrs().get_str(".id"), Some("*1A"));
        c.answer(&cmd, Reply::done()).await;
        let cmd = c.expect("/interface/print").await;
        c.answer(
            &cmd,
            Reply::re(
                [
                    (".id", "*1"),
                    ("name", "ether1"),
                    ("running", "true"),
                    ("rx-byte", "oops"),
                ]
                .into_iter()
                .collect(),
            ),
        )
        .await;
        c.answer(&cmd, Reply::done()).await;
        c.expect("/system/reboot").await;
        // A rebooting router just goes away.
    })
    .await;
    let client = connect(addr).await;
    let res = client.resources().await.unwrap();
    assert_eq!(
        res.uptime,
        Duration::from_secs(3 * 86_400 + 2 * 3600 + 4 * 60 + 5)
    );
    assert_eq!(res.version.minor, 18);
    assert_eq!(client.routerboard().await.unwrap(), None);
    let id = client
        .add_schedule(&routeros::menus::NewSchedule {
            name: "nl-change-1".into(),
            on_event: "/system reboot".into(),
            interval: Some(Duration::from_secs(5400)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(id, routeros::ItemId(0x1A));
    client.enable_schedule(id, false).await.unwrap();
    let bad = client.interfaces().await;
    assert!(
        matches!(&bad, Err(Error::Field { command, source: routeros::menus::FieldError::Invalid { field: "rx-byte", .. } })
            if command == "/interface/print"),
        "{bad:?}"
    );
    client.reboot().await.unwrap();
    assert!(client.is_closed());
    server.await.unwrap();
}
