//! Sockets: per-device API and API-SSL listeners (closed while the device is unreachable,
//! rebound when it comes back), sessions decoding sentences with the `routeros` codec,
//! tagged concurrent commands, `/cancel`, reply delays and the frame-level faults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use routeros::{Command, Decoder, Limits, Reply, Tag, TrapCategory};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::device::{Device, Link, Session};

/// A TLS certificate resolver that always presents one device's certificate.
#[derive(Debug)]
struct OneCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn tls_config(dev: &Device) -> Option<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCert(dev.cert.clone())));
    Some(Arc::new(cfg))
}

pub(crate) async fn bind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(%addr, "cannot rebind device listener");
    None
}

pub(crate) async fn accept_opt(l: &Option<TcpListener>) -> Option<TcpStream> {
    match l {
        Some(l) => l.accept().await.ok().map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Serves one device for its whole life: listeners follow the device's [`Link`].
pub(crate) async fn device_task(
    dev: Arc<Device>,
    api: TcpListener,
    ssl: TcpListener,
    api_addr: SocketAddr,
    ssl_addr: SocketAddr,
) {
    let mut link_rx = dev.link.subscribe();
    let mut api_l = Some(api);
    let mut ssl_l = Some(ssl);
    loop {
        let link = *link_rx.borrow_and_update();
        if !link.api {
            api_l = None;
        } else if api_l.is_none() {
            api_l = bind(api_addr).await;
        }
        if !link.ssl {
            ssl_l = None;
        } else if ssl_l.is_none() {
            ssl_l = bind(ssl_addr).await;
        }
        loop {
            tokio::select! {
                s = accept_opt(&api_l) => {
                    if let Some(s) = s {
                        let _ = s.set_nodelay(true);
                        let peer = s.peer_addr().ok();
                        tokio::spawn(serve(dev.clone(), s, peer, link.epoch, link_rx.clone()));
                    }
                }
                s = accept_opt(&ssl_l) => {
                    if let Some(s) = s {
                        let _ = s.set_nodelay(true);
                        let peer = s.peer_addr().ok();
                        let dev = dev.clone();
                        let rx = link_rx.clone();
                        tokio::spawn(async move {
                            let Some(cfg) = tls_config(&dev) else { return };
                            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(s)).await {
                                serve(dev, tls, peer, link.epoch, rx).await;
                            }
                        });
                    }
                }
                r = link_rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

type Running = Arc<Mutex<HashMap<String, JoinHandle<()>>>>;

fn encode(reply: &Reply) -> Option<Bytes> {
    reply.to_bytes().ok()
}

/// Serves one connection until the client leaves, the device goes down or a fault ends it;
/// its login session is in `/user active` until then.
pub(crate) async fn serve<S>(
    dev: Arc<Device>,
    stream: S,
    peer: Option<SocketAddr>,
    epoch: u32,
    mut link_rx: watch::Receiver<Link>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Bytes>>();
    let writer = tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            match item {
                Some(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let running: Running = Arc::new(Mutex::new(HashMap::new()));
    let mut decoder = Decoder::new(Limits::DEFAULT);
    let mut sess = Session {
        peer,
        ..Session::default()
    };
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            r = link_rx.changed() => {
                let l = *link_rx.borrow();
                if r.is_err() || l.epoch != epoch || (!l.api && !l.ssl) { break; }
                continue;
            }
        };
        decoder.feed(&buf[..n]);
        loop {
            let sentence = match decoder.next_sentence() {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(_) => break 'conn,
            };
            let Ok(cmd) = Command::from_sentence(&sentence) else {
                let _ = tx.send(encode(&Reply::trap(
                    Some(TrapCategory::Api),
                    "malformed sentence",
                )));
                continue;
            };
            sess.commands += 1;
            let faults = dev.faults();
            if faults
                .drop_after_commands
                .is_some_and(|n| sess.commands > n)
            {
                break 'conn;
            }
            let tag = cmd.tag().cloned();
            if sess.user.is_some()
                && let Some(message) = dev.take_failure(cmd.path())
            {
                dev.log_command(&cmd);
                let _ = tx.send(encode(&Reply::fatal(message)));
                let _ = tx.send(None);
                break 'conn;
            }
            if cmd.path() == "/cancel" {
                cancel(&running, &cmd, tag.clone(), &tx);
                continue;
            }
            if cmd.path() == "/tool/fetch" && sess.user.is_some() {
                // network I/O: runs in its own task, outside the device lock
                dev.log_command(&cmd);
                let (dev2, tx2, running2) = (dev.clone(), tx.clone(), running.clone());
                let key = tag
                    .as_ref()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default();
                let key2 = key.clone();
                let delay = Duration::from_millis(faults.delay_ms);
                let h = tokio::spawn(async move {
                    let replies = crate::fetch::fetch(&dev2, &cmd).await;
                    tokio::time::sleep(delay).await;
                    for r in replies {
                        let _ = tx2.send(encode(&r.with_tag(tag.clone())));
                    }
                    running2
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key2);
                });
                running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, h);
                continue;
            }
            if cmd.path() == "/import"
                && sess.user.is_some()
                && !cmd.attrs().contains("dry-run")
                && let Some(gate) = dev.import_gate()
            {
                // test knob (`Device::hold_imports`): wait for the other imports
                gate.wait().await;
            }
            let out = dev.handle(&mut sess, &cmd);
            let frames: Vec<Bytes> = if faults.corrupt_frames {
                vec![Bytes::from_static(&[0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x00])]
            } else {
                out.replies
                    .iter()
                    .filter_map(|r| encode(&r.clone().with_tag(tag.clone())))
                    .collect()
            };
            let delay = Duration::from_millis(faults.delay_ms);
            if delay.is_zero() {
                for f in frames {
                    let _ = tx.send(Some(f));
                }
                if out.close {
                    let _ = tx.send(None);
                    break 'conn;
                }
            } else {
                let tx2 = tx.clone();
                let key = tag
                    .as_ref()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default();
                let running2 = running.clone();
                let key2 = key.clone();
                let close = out.close;
                let h = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    for f in frames {
                        let _ = tx2.send(Some(f));
                    }
                    if close {
                        let _ = tx2.send(None);
                    }
                    running2
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key2);
                });
                running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, h);
            }
        }
    }
    for (_, h) in running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
    {
        h.abort();
    }
    dev.end_session(&sess);
    let _ = tx.send(None);
    let _ = writer.await;
}

fn cancel(
    running: &Running,
    cmd: &Command,
    tag: Option<Tag>,
    tx: &mpsc::UnboundedSender<Option<Bytes>>,
) {
    let target = cmd.attrs().get_str("tag").map(str::to_string);
    let mut map = running.lock().unwrap_or_else(PoisonError::into_inner);
    let keys: Vec<String> = match &target {
        Some(t) => map.keys().filter(|k| *k == t).cloned().collect(),
        None => map.keys().cloned().collect(),
    };
    let mut finished = Vec::new();
    for k in keys {
        if let Some(h) = map.remove(&k) {
            h.abort();
            let t = Tag::new(k.clone());
            let _ = tx.send(encode(
                &Reply::trap(Some(TrapCategory::Interrupted), "interrupted").with_tag(t.clone()),
            ));
            finished.push(t);
        }
    }
    drop(map);
    let _ = tx.send(encode(&Reply::done().with_tag(tag)));
    for t in finished {
        let _ = tx.send(encode(&Reply::done().with_tag(t)));
    }
}
