//! Async RouterOS API client on tokio: one connection, many tagged commands in flight.
//!
//! Shape: after the login (done synchronously on the fresh stream), the stream is split into a
//! reader task and a writer task. Every command gets a fresh numeric `.tag` (never reused, so
//! late replies for a cancelled command are recognised as strays and dropped, as
//! ROUTEROS-NOTES §1.7 requires) and a bounded channel the reader routes its replies into.
//!
//! - [`Client::run`] sends a command and collects its rows until `!done`, under the
//!   per-command timeout; a timed-out command is cancelled on the router (`/cancel =tag=`).
//! - [`Client::stream`] returns a [`ReplyStream`] for `listen`, `follow`, `interval` and other
//!   commands that never end by themselves; [`ReplyStream::cancel`] stops it cleanly and
//!   dropping it cancels it too.
//! - A lost connection (EOF, socket error, `!fatal`, bad framing) fails every pending command
//!   with the typed cause; [`Client::close`] says `/quit` and shuts down.
//!
//! Back-pressure: the reader waits when a command's channel is full, so a [`ReplyStream`] that
//! is never polled eventually stalls the whole connection. Poll or drop streams.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::codec::{Decoder, Limits};
use crate::error::Error;
use crate::proto::{Attrs, Command, Reply, ReplyKind, Tag, Trap, sentence_tag};
use crate::tls::{self, PeerCertificate, TlsPolicy};

/// Replies buffered per command before the reader waits for the consumer.
const CHANNEL_CAPACITY: usize = 64;
/// How long [`Client::close`] waits for the router to answer `/quit` and close.
const QUIT_GRACE: Duration = Duration::from_secs(1);
/// Bytes read from the socket at a time. Every connection keeps this buffer for its whole
/// life, so it is small: a poller holds one session per device (10,000 sessions: up to 40 MiB at
/// 4 KiB, 160 MiB at 16 KiB); larger replies just take more reads.
const READ_CHUNK: usize = 4 * 1024;

/// A password that never appears in `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The clear text, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Decides whether the client may connect to one address its host resolved to: `Err` with
/// the reason refuses that address. Set by whoever knows which networks devices may be in
/// (`netledger-device-client`); the client applies it to every address before connecting,
/// so a host name that resolves somewhere else after it was checked is still caught.
#[derive(Clone)]
pub struct AddressGuard(Arc<dyn Fn(std::net::SocketAddr) -> Result<(), String> + Send + Sync>);

impl AddressGuard {
    /// A guard running `check` on each resolved address.
    pub fn new(
        check: impl Fn(std::net::SocketAddr) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(check))
    }

    /// Runs the check.
    pub fn check(&self, addr: std::net::SocketAddr) -> Result<(), String> {
        (self.0)(addr)
    }
}

impl fmt::Debug for AddressGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddressGuard(..)")
    }
}

/// How to reach and log in to one router.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host name or IP address.
    pub host: String,
    /// TCP port; `None` means 8728, or 8729 with TLS.
    pub port: Option<u16>,
    /// User name.
    pub user: String,
    /// Password.
    pub password: Password,
    /// `Some` for API-SSL.
    pub tls: Option<TlsPolicy>,
    /// Name for the TLS handshake (CA verification checks it); defaults to `host`.
    pub tls_server_name: Option<String>,
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Default bound on one command, from sending it to its `!done` (login included).
    pub command_timeout: Duration,
    /// Decoder limits for what the router sends.
    pub limits: Limits,
    /// Bounds on one command's whole reply and on one file read back.
    pub reply_limits: ReplyLimits,
    /// Checks every address the host resolves to before connecting; `None` connects to any.
    pub address_guard: Option<AddressGuard>,
}

/// How much one command may return before the client gives up on it: a registered
/// "device" is not trusted to end its replies, and [`Client::run`] keeps every row in
/// memory until `!done`. Past a bound the command is cancelled on the router and fails with
/// [`Error::ReplyTooLarge`]; streams ([`Client::stream`]) are bounded by their consumer
/// instead (back-pressure), so these bounds do not apply to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Most `!re` rows in one reply.
    pub max_rows: usize,
    /// Most bytes in one reply: the sum of every row's attribute names and values.
    pub max_bytes: usize,
    /// Most bytes of one file read back (an export or a backup, see
    /// [`Client::file_contents`]).
    pub max_file_bytes: usize,
}

impl ReplyLimits {
    /// 50,000 rows and 32 MiB per reply, 64 MiB per file. What the platform reads is far
    /// smaller (a poll is a handful of rows, a file chunk one row of 32 KiB; exports of the
    /// largest configurations seen are a few MiB), so the bounds only stop a peer that does
    /// not stop.
    pub const DEFAULT: ReplyLimits = ReplyLimits {
        max_rows: 50_000,
        max_bytes: 32 << 20,
        max_file_bytes: 64 << 20,
    };
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Config {
    /// Plain API on port 8728 with 10 s connect and 30 s command timeouts.
    pub fn new(host: impl Into<String>, user: impl Into<String>, password: Password) -> Self {
        Self {
            host: host.into(),
            port: None,
            user: user.into(),
            password,
            tls: None,
            tls_server_name: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            limits: Limits::DEFAULT,
            reply_limits: ReplyLimits::DEFAULT,
            address_guard: None,
        }
    }

    /// Uses API-SSL with this policy.
    pub fn with_tls(mut self, policy: TlsPolicy) -> Self {
        self.tls = Some(policy);
        self
    }

    /// Sets the port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The effective port.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8729 } else { 8728 })
    }
}

/// Everything a command returned: its rows and the attributes of its `!done`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The `!re` rows, in order.
    pub rows: Vec<Attrs>,
    /// The `!done` attributes (`ret` for `add`, `count-only`, `script run`).
    pub done: Attrs,
    /// True when the router sent `!empty` (7.18+).
    pub empty: bool,
}

impl Response {
    /// The `=ret=` of the `!done`.
    pub fn ret(&self) -> Option<&Bytes> {
        self.done.get("ret")
    }
}

/// Why the connection ended; cloned into an [`Error`] for every command that asks.
#[derive(Debug, Clone)]
enum Disconnect {
    Eof,
    Io(Arc<std::io::Error>),
    Fatal(String),
    Codec(crate::codec::CodecError),
    Protocol(crate::proto::ProtoError),
    Closed,
}

impl Disconnect {
    fn to_error(&self) -> Error {
        match self {
            Disconnect::Eof | Disconnect::Closed => Error::ConnectionClosed { source: None },
            Disconnect::Io(e) => Error::ConnectionClosed {
                source: Some(e.clone()),
            },
            Disconnect::Fatal(reason) => Error::Fatal {
                reason: reason.clone(),
            },
            Disconnect::Codec(e) => Error::Codec { source: e.clone() },
            Disconnect::Protocol(e) => Error::Protocol { source: e.clone() },
        }
    }
}

type ReplySender = mpsc::Sender<Result<Reply, Error>>;

#[derive(Default)]
struct State {
    pending: HashMap<Tag, ReplySender>,
    closed: Option<Disconnect>,
}

/// State shared by the handles and the I/O tasks.
struct Shared {
    state: Mutex<State>,
    shutdown: CancellationToken,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the first cause and drops every pending command's sender, so each waiting
    /// command wakes up, finds its channel closed and reads the cause.
    fn close(&self, cause: Disconnect) {
        let pending = {
            let mut st = self.lock();
            if st.closed.is_none() {
                tracing::debug!(?cause, "routeros connection closed");
                st.closed = Some(cause);
            }
            std::mem::take(&mut st.pending)
        };
        drop(pending);
    }

    fn cause(&self) -> Error {
        self.lock().closed.as_ref().map_or(
            Error::ConnectionClosed { source: None },
            Disconnect::to_error,
        )
    }
}

struct Inner {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<Bytes>,
    next_tag: AtomicU64,
    command_timeout: Duration,
    reply_limits: ReplyLimits,
    peer: Option<PeerCertificate>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close(Disconnect::Closed);
        self.shared.shutdown.cancel();
    }
}

/// A logged-in connection to one router. Cheap to clone; all clones share the connection,
/// which ends when the last clone (and the last [`ReplyStream`]) is dropped or on
/// [`Client::close`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.is_closed())
            .field("peer", &self.inner.peer)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects (TCP, then TLS if configured), logs in and starts the I/O tasks.
    #[tracing::instrument(skip_all, fields(host = %config.host, port = config.port()))]
    pub async fn connect(config: &Config) -> Result<Client, Error> {
        let port = config.port();
        let addr = format!("{}:{}", config.host, port);
        let connect = async {
            let tcp = match &config.address_guard {
                None => TcpStream::connect((config.host.as_str(), port)).await,
                Some(guard) => {
                    let resolved: Vec<std::net::SocketAddr> =
                        tokio::net::lookup_host((config.host.as_str(), port))
                            .await
                            .map_err(|source| Error::Connect {
                                addr: addr.clone(),
                                source,
                            })?
                            .collect();
                    let mut allowed = Vec::with_capacity(resolved.len());
                    let mut refused = None;
                    for a in resolved {
                        match guard.check(a) {
                            Ok(()) => allowed.push(a),
                            Err(reason) => refused = refused.or(Some(reason)),
                        }
                    }
                    if allowed.is_empty() {
                        return Err(Error::AddressRefused {
                            addr: addr.clone(),
                            reason: refused
                                .unwrap_or_else(|| "the host resolved to no address".to_owned()),
                        });
                    }
                    // Only the checked addresses: no second resolution that could differ.
                    TcpStream::connect(&allowed[..]).await
                }
            }
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
            // Sentences are small; do not let Nagle delay them. Failure only costs latency.
            let _ = tcp.set_nodelay(true);
            match &config.tls {
                None => Ok((Transport::Plain(tcp), None)),
                Some(policy) => {
                    let name = config.tls_server_name.as_deref().unwrap_or(&config.host);
                    let (tls, peer) = tls::handshake(tcp, policy, name).await?;
                    Ok((Transport::Tls(Box::new(tls)), Some(peer)))
                }
            }
        };
        let (transport, peer) = tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: addr.clone(),
                after: config.connect_timeout,
            })??;
        match transport {
            Transport::Plain(s) => Self::start(s, config, peer).await,
            Transport::Tls(s) => Self::start(*s, config, peer).await,
        }
    }

    /// Logs in over an already connected stream (any transport) and starts the I/O tasks.
    /// `host`, `port`, `tls` and `connect_timeout` of `config` are not used.
    pub async fn login_over<S>(stream: S, config: &Config) -> Result<Client, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::start(stream, config, None).await
    }

    async fn start<S>(
        mut stream: S,
        config: &Config,
        peer: Option<PeerCertificate>,
    ) -> Result<Client, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut decoder = Decoder::new(config.limits);
        tokio::time::timeout(
            config.command_timeout,
            login(&mut stream, &mut decoder, &config.user, &config.password),
        )
        .await
        .map_err(|_| Error::Timeout {
            command: "/login".into(),
            after: config.command_timeout,
        })??;

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            shutdown: CancellationToken::new(),
        });
        let (read_half, write_half) = tokio::io::split(stream);
        let (writer, frames) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(read_half, decoder, shared.clone()));
        tokio::spawn(write_loop(write_half, frames, shared.clone()));
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                writer,
                next_tag: AtomicU64::new(1),
                command_timeout: config.command_timeout,
                reply_limits: config.reply_limits,
                peer,
                reader: Mutex::new(Some(reader)),
            }),
        })
    }

    /// The bounds this connection applies to replies.
    pub fn reply_limits(&self) -> ReplyLimits {
        self.inner.reply_limits
    }

    /// The certificate the router presented, on API-SSL connections. With
    /// [`TlsPolicy::TrustOnFirstUse`] this is the fingerprint to record and pin.
    pub fn peer_certificate(&self) -> Option<&PeerCertificate> {
        self.inner.peer.as_ref()
    }

    /// True once the connection has ended; every command then fails at once.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.lock().closed.is_some()
    }

    /// Runs a command to completion under the default command timeout.
    ///
    /// Any `.tag` on `cmd` is replaced. A `!trap` makes the result [`Error::Trap`] (after the
    /// `!done`, so all traps are reported).
    pub async fn run(&self, cmd: Command) -> Result<Response, Error> {
        self.run_with_timeout(cmd, self.inner.command_timeout).await
    }

    /// [`Client::run`] with an explicit timeout. On expiry the command is cancelled on the
    /// router and [`Error::Timeout`] returned.
    pub async fn run_with_timeout(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let mut pending = self.send(cmd)?;
        let limits = self.inner.reply_limits;
        match tokio::time::timeout(timeout, collect(&mut pending, limits)).await {
            Ok(result) => result,
            // Dropping `pending` unfinished sends `/cancel` for its tag.
            Err(_) => Err(Error::Timeout {
                command: pending.path.clone(),
                after: timeout,
            }),
        }
    }

    /// Starts a command whose rows arrive over time (`listen`, `=follow=`, `=interval=`).
    /// No timeout applies; cancel it with [`ReplyStream::cancel`] or by dropping it.
    pub fn stream(&self, cmd: Command) -> Result<ReplyStream, Error> {
        Ok(ReplyStream {
            pending: self.send(cmd)?,
        })
    }

    /// Closes the connection: pending commands fail with [`Error::ConnectionClosed`], the
    /// router is told `/quit`, and the tasks stop once it hangs up (or after a short grace).
    pub async fn close(&self) {
        self.inner.shared.close(Disconnect::Closed);
        if let Ok(frame) = encode(&Command::new("/quit")) {
            let _ = self.inner.writer.send(frame);
        }
        let reader = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut reader) = reader
            && tokio::time::timeout(QUIT_GRACE, &mut reader).await.is_err()
        {
            self.inner.shared.shutdown.cancel();
            let _ = reader.await;
        }
        self.inner.shared.shutdown.cancel();
    }

    fn send(&self, cmd: Command) -> Result<Pending, Error> {
        let tag = Tag::from(self.inner.next_tag.fetch_add(1, Ordering::Relaxed));
        let cmd = cmd.with_tag(Some(tag.clone()));
        let path = cmd.path().to_owned();
        let frame = encode(&cmd)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        {
            let mut st = self.inner.shared.lock();
            if let Some(cause) = &st.closed {
                return Err(cause.to_error());
            }
            st.pending.insert(tag.clone(), tx);
        }
        let pending = Pending {
            client: self.clone(),
            tag,
            path,
            rx,
            finished: false,
        };
        if self.inner.writer.send(frame).is_err() {
            return Err(self.inner.shared.cause());
        }
        Ok(pending)
    }

    /// Fire-and-forget `/cancel =tag=T`; its own `!done` arrives under an unregistered tag and
    /// is dropped as a stray.
    fn send_cancel(&self, tag: &Tag) {
        let fresh = Tag::from(self.inner.next_tag.fetch_add(1, Ordering::Relaxed));
        let cancel = Command::new("/cancel")
            .attr("tag", tag.as_str())
            .with_tag(Some(fresh));
        if let Ok(frame) = encode(&cancel) {
            let _ = self.inner.writer.send(frame);
        }
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

fn encode(cmd: &Command) -> Result<Bytes, Error> {
    cmd.to_bytes().map_err(|source| Error::Encode {
        command: cmd.path().to_owned(),
        source,
    })
}

/// A command in flight: its tag and reply channel. Dropped unfinished, it unregisters and
/// cancels the command on the router.
struct Pending {
    client: Client,
    tag: Tag,
    path: String,
    rx: mpsc::Receiver<Result<Reply, Error>>,
    finished: bool,
}

impl Pending {
    /// Next reply; `!done` finishes. A closed channel before `!done` means the connection
    /// ended: its cause is returned.
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Reply, Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(reply))) => {
                if matches!(reply.kind, ReplyKind::Done(_)) {
                    self.finished = true;
                }
                Poll::Ready(Some(Ok(reply)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(Err(self.client.inner.shared.cause())))
            }
        }
    }

    async fn next_reply(&mut self) -> Option<Result<Reply, Error>> {
        std::future::poll_fn(|cx| self.poll_reply(cx)).await
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let was_pending = self.client.inner.shared.lock().pending.remove(&self.tag);
        if was_pending.is_some() {
            self.client.send_cancel(&self.tag);
        }
    }
}

/// Collects a command's replies until `!done`, within `limits`; past them the caller drops
/// `pending`, which cancels the command on the router.
async fn collect(pending: &mut Pending, limits: ReplyLimits) -> Result<Response, Error> {
    let mut response = Response::default();
    let mut traps: Vec<Trap> = Vec::new();
    let mut bytes = 0usize;
    while let Some(reply) = pending.next_reply().await {
        match reply?.kind {
            ReplyKind::Re(row) => {
                bytes = row
                    .iter()
                    .fold(bytes, |n, (k, v)| n.saturating_add(k.len() + v.len()));
                let exceeded = if response.rows.len() >= limits.max_rows {
                    Some(format!("{} rows", limits.max_rows))
                } else if bytes > limits.max_bytes {
                    Some(format!("{} bytes", limits.max_bytes))
                } else {
                    None
                };
                if let Some(limit) = exceeded {
                    return Err(Error::ReplyTooLarge {
                        command: pending.path.clone(),
                        limit,
                    });
                }
                response.rows.push(row);
            }
            ReplyKind::Empty => response.empty = true,
            ReplyKind::Trap(trap) => traps.push(trap),
            ReplyKind::Fatal(reason) => return Err(Error::Fatal { reason }),
            ReplyKind::Done(done) => {
                let mut traps = traps.into_iter();
                return match traps.next() {
                    None => {
                        response.done = done;
                        Ok(response)
                    }
                    Some(trap) => Err(Error::Trap {
                        command: pending.path.clone(),
                        trap,
                        more: traps.collect(),
                    }),
                };
            }
        }
    }
    Err(pending.client.inner.shared.cause())
}

/// Rows of a long-running command, as a [`Stream`] of `Result<Attrs, Error>`.
///
/// Ends (`None`) at the command's `!done`, including after a cancel (the `interrupted` trap
/// is the normal end of a stream). `!empty` is skipped. Other traps are yielded as
/// [`Error::Trap`]; a lost connection as its cause, after which the stream ends.
pub struct ReplyStream {
    pending: Pending,
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyStream")
            .field("tag", &self.pending.tag)
            .field("path", &self.pending.path)
            .finish_non_exhaustive()
    }
}

impl ReplyStream {
    /// The tag the command runs under.
    pub fn tag(&self) -> &Tag {
        &self.pending.tag
    }

    /// Cancels the command (`/cancel =tag=T`) and waits until the router confirms it with the
    /// command's `!done`; rows that arrive meanwhile are discarded. Bounded by the client's
    /// command timeout.
    pub async fn cancel(mut self) -> Result<(), Error> {
        if self.pending.finished {
            return Ok(());
        }
        let client = self.pending.client.clone();
        let after = client.inner.command_timeout;
        let cancel = Command::new("/cancel").attr("tag", self.pending.tag.as_str());
        // Drain concurrently: the stream's channel may be full, and the reader must get past
        // it to deliver the `/cancel`'s own `!done`.
        let drain = async {
            while let Some(reply) = self.pending.next_reply().await {
                match reply?.kind {
                    ReplyKind::Trap(trap) if !trap.is_interrupted() => {
                        return Err(Error::Trap {
                            command: self.pending.path.clone(),
                            trap,
                            more: Vec::new(),
                        });
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        let both = async { tokio::join!(client.run(cancel), drain) };
        let (cancelled, drained) =
            tokio::time::timeout(after, both)
                .await
                .map_err(|_| Error::Timeout {
                    command: "/cancel".into(),
                    after,
                })?;
        cancelled?;
        drained
    }
}

impl Stream for ReplyStream {
    type Item = Result<Attrs, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let reply = match self.pending.poll_reply(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(reply))) => reply,
            };
            match reply.kind {
                ReplyKind::Re(row) => return Poll::Ready(Some(Ok(row))),
                ReplyKind::Empty | ReplyKind::Done(_) => {}
                ReplyKind::Trap(trap) if trap.is_interrupted() => {}
                ReplyKind::Trap(trap) => {
                    return Poll::Ready(Some(Err(Error::Trap {
                        command: self.pending.path.clone(),
                        trap,
                        more: Vec::new(),
                    })));
                }
                ReplyKind::Fatal(reason) => return Poll::Ready(Some(Err(Error::Fatal { reason }))),
            }
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut read: R, mut decoder: Decoder, shared: Arc<Shared>) {
    let mut buf = vec![0u8; READ_CHUNK];
    let cause = loop {
        match decoder.next_sentence() {
            Ok(Some(sentence)) => {
                if let Some(cause) = dispatch(&shared, sentence).await {
                    break cause;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break Disconnect::Codec(e),
        }
        let read = tokio::select! {
            r = read.read(&mut buf) => r,
            () = shared.shutdown.cancelled() => break Disconnect::Closed,
        };
        match read {
            Ok(0) => break Disconnect::Eof,
            Ok(n) => decoder.feed(buf.get(..n).unwrap_or_default()),
            Err(e) => break Disconnect::Io(Arc::new(e)),
        }
    };
    shared.close(cause);
    // Let the writer finish and shut the socket down.
    shared.shutdown.cancel();
}

/// Routes one sentence to its command. Returns the cause when the connection must end.
async fn dispatch(shared: &Shared, sentence: crate::codec::Sentence) -> Option<Disconnect> {
    let (tag, item) = match Reply::from_sentence(&sentence) {
        Ok(Reply {
            kind: ReplyKind::Fatal(reason),
            ..
        }) => return Some(Disconnect::Fatal(reason)),
        Ok(reply) => match reply.tag.clone() {
            Some(tag) => (tag, Ok(reply)),
            None => {
                tracing::warn!(?reply, "untagged reply ignored");
                return None;
            }
        },
        Err(e) => match sentence_tag(&sentence) {
            Some(tag) => (tag, Err(Error::Protocol { source: e })),
            None => return Some(Disconnect::Protocol(e)),
        },
    };
    let last = matches!(
        &item,
        Ok(Reply {
            kind: ReplyKind::Done(_),
            ..
        }) | Err(_)
    );
    let tx = {
        let mut st = shared.lock();
        if last {
            st.pending.remove(&tag)
        } else {
            st.pending.get(&tag).cloned()
        }
    };
    let Some(tx) = tx else {
        tracing::debug!(%tag, "reply for an unknown or cancelled tag dropped");
        return None;
    };
    tokio::select! {
        // A send error means the command was dropped; it has cancelled itself.
        _ = tx.send(item) => None,
        () = shared.shutdown.cancelled() => Some(Disconnect::Closed),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut write: W,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
) {
    loop {
        let frame = tokio::select! {
            biased;
            f = frames.recv() => f,
            () = shared.shutdown.cancelled() => None,
        };
        let Some(frame) = frame else { break };
        let written = tokio::select! {
            r = async { write.write_all(&frame).await?; write.flush().await } => r,
            () = shared.shutdown.cancelled() => break,
        };
        if let Err(e) = written {
            shared.close(Disconnect::Io(Arc::new(e)));
            // Stop the reader too: nothing more can be asked on this connection.
            shared.shutdown.cancel();
            break;
        }
    }
    let _ = write.shutdown().await;
}

/// Writes one command directly (used before the I/O tasks exist).
async fn write_command<S: AsyncWrite + Unpin>(stream: &mut S, cmd: &Command) -> Result<(), Error> {
    let frame = encode(cmd)?;
    let io = async {
        stream.write_all(&frame).await?;
        stream.flush().await
    };
    io.await.map_err(|e| Error::ConnectionClosed {
        source: Some(Arc::new(e)),
    })
}

/// Reads replies until `!done`; traps make the login rejected.
async fn read_login_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut Decoder,
    user: &str,
) -> Result<Attrs, Error> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut trap: Option<Trap> = None;
    loop {
        let sentence = match decoder.next_sentence() {
            Err(source) => return Err(Error::Codec { source }),
            Ok(Some(s)) => s,
            Ok(None) => {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| Error::ConnectionClosed {
                        source: Some(Arc::new(e)),
                    })?;
                if n == 0 {
                    return Err(Error::ConnectionClosed { source: None });
                }
                decoder.feed(buf.get(..n).unwrap_or_default());
                continue;
            }
        };
        match Reply::from_sentence(&sentence)
            .map_err(|source| Error::Protocol { source })?
            .kind
        {
            ReplyKind::Trap(t) => {
                trap.get_or_insert(t);
            }
            ReplyKind::Fatal(reason) => return Err(Error::Fatal { reason }),
            ReplyKind::Done(done) => {
                return match trap {
                    Some(t) => Err(Error::LoginRejected {
                        user: user.to_owned(),
                        message: t.message,
                    }),
                    None => Ok(done),
                };
            }
            ReplyKind::Re(_) | ReplyKind::Empty => {}
        }
    }
}

/// Logs in: the 6.43+ plain form first; if the router answers with a challenge (`=ret=`),
/// the pre-6.43 MD5 challenge-response (ROUTEROS-NOTES §2.1, §2.2).
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    decoder: &mut Decoder,
    user: &str,
    password: &Password,
) -> Result<(), Error> {
    let plain = Command::new("/login")
        .attr("name", user)
        .attr("password", password.expose());
    write_command(stream, &plain).await?;
    let done = read_login_reply(stream, decoder, user).await?;
    let Some(challenge) = done.get("ret") else {
        return Ok(());
    };
    let challenge = hex::decode(challenge).map_err(|_| Error::UnexpectedReply {
        command: "/login".into(),
        detail: "login challenge is not hex".into(),
    })?;
    let response = Command::new("/login")
        .attr("name", user)
        .attr("response", challenge_response(password, &challenge));
    write_command(stream, &response).await?;
    read_login_reply(stream, decoder, user).await?;
    Ok(())
}

/// `"00"` + hex(MD5(0x00 ‖ password ‖ challenge)).
pub(crate) fn challenge_response(password: &Password, challenge: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update([0u8]);
    md5.update(password.expose().as_bytes());
    md5.update(challenge);
    format!("00{}", hex::encode(md5.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_response_matches_known_vector() {
        // Computed independently with Python's hashlib:
        // hashlib.md5(b"\x00" + b"secret" + bytes.fromhex(CHALLENGE)).hexdigest()
        let challenge = hex::decode("ebddd18e4ec2e3e4f0e9ba7c3f2c7d5e").unwrap();
        let r = challenge_response(&Password::new("secret"), &challenge);
        assert_eq!(r, "0013fb1453b8562d73eb3d361308836755");
    }

    #[test]
    fn password_is_redacted_in_debug() {
        let cfg = Config::new("r1", "admin", Password::new("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
