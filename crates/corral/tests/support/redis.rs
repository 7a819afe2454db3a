//! Real `redis-server` processes for the tests: each on a free loopback port, in its
//! own temporary directory, killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "corral-redis-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Sends one command in RESP and returns the raw reply.
pub(crate) fn raw_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reply = [0u8; 4096];
    let n = stream.read(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
}

impl RedisServer {
    /// Starts a server on a free port.
    pub(crate) fn start() -> RedisServer {
        Self::start_with(free_port(), &[] as &[&str])
    }

    /// Starts a server on a free port with extra arguments.
    pub(crate) fn start_with_args(extra: &[impl AsRef<str>]) -> RedisServer {
        Self::start_with(free_port(), extra)
    }

    /// Starts a server on `port` with extra arguments.
    pub(crate) fn start_with(port: u16, extra: &[impl AsRef<str>]) -> RedisServer {
        let dir = scratch_dir();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.to_str().expect("utf-8 temp dir"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.as_ref().to_owned()));
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            args,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it (`apt-get install redis-server`) \
                     or run ./scripts/test.sh, which does"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while raw_command(self.port, &["PING"]).map_or(true, |r| !r.starts_with("+PONG")) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A client for the test's own checks.
    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a client")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private certificate authority and a certificate it signed for `localhost` and
/// 127.0.0.1, made with `openssl` in a scratch directory, for TLS servers.
pub(crate) struct PrivateCa {
    dir: PathBuf,
}

impl PrivateCa {
    pub(crate) fn new() -> PrivateCa {
        let ca = PrivateCa { dir: scratch_dir() };
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl (to make test certificates)");
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca.path("ca.key"),
            "-out",
            &ca.path("ca.crt"),
            "-days",
            "1",
            "-subj",
            "/CN=corral-test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca.path("server.key"),
            "-out",
            &ca.path("server.csr"),
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            ca.path("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("an openssl extension file");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &ca.path("server.csr"),
            "-CA",
            &ca.path("ca.crt"),
            "-CAkey",
            &ca.path("ca.key"),
            "-CAcreateserial",
            "-out",
            &ca.path("server.crt"),
            "-days",
            "1",
            "-extfile",
            &ca.path("ext.cnf"),
        ]);
        ca
    }

    /// A file of this CA's directory.
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir
            .join(name)
            .to_str()
            .expect("utf-8 temp dir")
            .to_owned()
    }

    /// The CA's certificate (PEM), for clients to trust.
    pub(crate) fn pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.crt")).expect("the CA certificate")
    }

    /// The arguments that make `redis-server` speak TLS on `tls_port` too, with the
    /// signed certificate (its clients need none of their own).
    pub(crate) fn server_args(&self, tls_port: u16) -> Vec<String> {
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            self.path("server.crt"),
            "--tls-key-file".into(),
            self.path("server.key"),
            "--tls-ca-cert-file".into(),
            self.path("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }
}

impl Drop for PrivateCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters on loopback, created with `redis-cli --cluster create`.
pub(crate) struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Each node's TLS port, in a cluster from [`start_tls`](Self::start_tls).
    pub tls_ports: Vec<u16>,
}

impl RedisCluster {
    pub(crate) fn start() -> RedisCluster {
        Self::create(None)
    }

    /// A cluster whose nodes speak TLS with `ca`'s certificate (to clients on their
    /// TLS ports, and to each other), and plain TCP on their ports for the tests' checks.
    pub(crate) fn start_tls(ca: &PrivateCa) -> RedisCluster {
        Self::create(Some(ca))
    }

    fn create(tls: Option<&PrivateCa>) -> RedisCluster {
        let (mut nodes, mut tls_ports) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            // The bus port is chosen too: by default it is the port + 10000, which is
            // out of range for a free port above 55535.
            let mut args: Vec<String> = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-node-timeout".into(),
                "2000".into(),
                "--cluster-port".into(),
                free_port().to_string(),
            ];
            if let Some(ca) = tls {
                let tls_port = free_port();
                tls_ports.push(tls_port);
                args.extend(ca.server_args(tls_port));
                args.extend(["--tls-cluster".into(), "yes".into()]);
            }
            nodes.push(RedisServer::start_with(free_port(), &args));
        }
        let mut create = Command::new("redis-cli");
        let addresses: Vec<String> = match tls {
            None => nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port))
                .collect(),
            Some(ca) => {
                create.args(["--tls", "--cacert", &ca.path("ca.crt")]);
                tls_ports
                    .iter()
                    .map(|port| format!("127.0.0.1:{port}"))
                    .collect()
            }
        };
        let status = create
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (installed with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            while !raw_command(node.port, &["CLUSTER", "INFO"])
                .is_ok_and(|r| r.contains("cluster_state:ok"))
            {
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not become ready"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes, tls_ports }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
