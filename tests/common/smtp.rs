//! A small real SMTP server for the tests: it speaks enough of RFC 5321 (EHLO/HELO, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT) for lettre to deliver to it over TCP, and keeps what it receives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub to: Vec<String>,
    pub data: String,
}

impl ReceivedMail {
    /// The registration link in the message, with quoted-printable soft breaks undone.
    pub fn link(&self) -> String {
        let body = self.data.replace("=\r\n", "").replace("=3D", "=");
        let start = body.find("http").expect("a link in the email");
        body[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(['"', '<', '>'])
            .to_string()
    }

    pub fn token(&self) -> String {
        self.link()
            .split("token=")
            .nth(1)
            .expect("a token in the link")
            .split(['"', '<', '&'])
            .next()
            .unwrap()
            .to_string()
    }
}

/// How the sink answers a message's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 250: kept.
    Accept,
    /// This code (e.g. 421 or 451: try later; 550: never), nothing kept.
    Refuse(u16),
    /// No answer at all: the client times out.
    Hang,
}

/// What every session shares.
struct Sink {
    received: Mutex<Vec<ReceivedMail>>,
    /// Messages whose data was sent, whatever the answer.
    attempts: AtomicUsize,
    reply: Mutex<Reply>,
    arrived: Notify,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    sink: Arc<Sink>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Listens on `port` (0 for any free one).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the SMTP sink");
        let port = listener.local_addr().unwrap().port();
        let sink = Arc::new(Sink {
            received: Mutex::new(Vec::new()),
            attempts: AtomicUsize::new(0),
            reply: Mutex::new(Reply::Accept),
            arrived: Notify::new(),
        });
        let shared = Arc::clone(&sink);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = session(stream, sink).await;
                });
            }
        });
        Self { port, sink, task: Arc::new(task) }
    }

    /// From now on, answers messages this way.
    pub fn reply(&self, reply: Reply) {
        *self.sink.reply.lock().unwrap() = reply;
    }

    /// Messages whose data was sent, whatever the answer.
    pub fn attempts(&self) -> usize {
        self.sink.attempts.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages have been tried (panics after `seconds`).
    pub async fn wait_for_attempts(&self, n: usize, seconds: u64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let notified = self.sink.arrived.notified();
            if self.attempts() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} attempt(s) within {seconds} s, got {}", self.attempts());
            }
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.sink.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages have arrived (panics after `seconds`).
    pub async fn wait_for(&self, n: usize, seconds: u64) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let notified = self.sink.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} email(s) within {seconds} s, got {}", self.received().len());
            }
        }
    }

    /// Waits for the latest message to `address` (panics after `seconds`).
    pub async fn wait_for_mail_to(&self, address: &str, seconds: u64) -> ReceivedMail {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let notified = self.sink.arrived.notified();
            if let Some(mail) = self
                .received()
                .into_iter()
                .rev()
                .find(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            {
                return mail;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no email to {address} within {seconds} s");
            }
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, sink: Arc<Sink>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 test-smtp ESMTP ready\r\n").await?;
    let mut to = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let command = line.to_ascii_uppercase();
        if command.starts_with("EHLO") {
            write.write_all(b"250-test-smtp\r\n250 8BITMIME\r\n").await?;
        } else if command.starts_with("HELO")
            || command.starts_with("MAIL FROM")
            || command.starts_with("NOOP")
        {
            write.write_all(b"250 OK\r\n").await?;
        } else if command.starts_with("RSET") {
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if command.starts_with("RCPT TO") {
            to.push(line[8..].trim().trim_matches(['<', '>', ':']).to_string());
            write.write_all(b"250 OK\r\n").await?;
        } else if command.starts_with("DATA") {
            write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            while let Some(line) = lines.next_line().await? {
                if line == "." {
                    break;
                }
                data.push_str(
                    line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line),
                );
                data.push_str("\r\n");
            }
            let reply = *sink.reply.lock().unwrap();
            sink.attempts.fetch_add(1, Ordering::SeqCst);
            match reply {
                Reply::Accept => {
                    let mail = ReceivedMail { to: std::mem::take(&mut to), data };
                    sink.received.lock().unwrap().push(mail);
                    sink.arrived.notify_waiters();
                    write.write_all(b"250 OK: queued\r\n").await?;
                }
                Reply::Refuse(code) => {
                    sink.arrived.notify_waiters();
                    to.clear();
                    write.write_all(format!("{code} refused by the test\r\n").as_bytes()).await?;
                }
                Reply::Hang => {
                    sink.arrived.notify_waiters();
                    std::future::pending::<()>().await;
                }
            }
        } else if command.starts_with("QUIT") {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 Command not implemented\r\n").await?;
        }
    }
    Ok(())
}
