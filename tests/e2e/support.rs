use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_needle");

/// A running `needle serve` process. Killed (SIGKILL) when dropped.
pub struct Node {
    child: Child,
    pub url: String,
    pub data: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Node {
    /// Starts a node on `data` with a free port and waits until it accepts requests.
    pub fn start(data: &Path, extra: &[&str]) -> Node {
        Node::start_with_env(data, extra, &[])
    }

    /// [`Node::start`] with extra environment variables (kept for restarts).
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(String, String)]) -> Node {
        Node::spawn(Command::new(BIN), data, extra, env)
    }

    /// [`Node::start`] with the process's address space capped at `bytes`
    /// (`prlimit --as`): an allocation sized by an unchecked count then fails (and
    /// aborts the node) instead of passing by luck on a machine with memory to spare.
    pub fn start_with_address_space_limit(data: &Path, extra: &[&str], bytes: u64) -> Node {
        let mut prlimit = Command::new("prlimit");
        prlimit.arg(format!("--as={bytes}")).arg("--").arg(BIN);
        Node::spawn(prlimit, data, extra, &[])
    }

    fn spawn(mut command: Command, data: &Path, extra: &[&str], env: &[(String, String)]) -> Node {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut child = command
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--http", "127.0.0.1:0", "--log-format", "text"])
            .args(&extra)
            .env("RUST_LOG", "info")
            .env_remove("NEEDLE_CONFIG")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn needle");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // NEEDLE_E2E_LOGS=DIR keeps every node's log there (one file per process).
        let mut keep = std::env::var_os("NEEDLE_E2E_LOGS").and_then(|dir| {
            std::fs::File::create(std::path::Path::new(&dir).join(format!("{}.log", child.id())))
                .ok()
        });
        // Keep draining stderr for the node's whole life so it never blocks on a pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = keep.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(file, "{line}");
                }
                if !sent {
                    if let Some(pos) = line
                        .find("listening on http://")
                        .or_else(|| line.find("listening on https://"))
                    {
                        let addr = line[pos + "listening on ".len()..].trim().to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("needle did not start (status {:?})", child.try_wait()));
        Node {
            child,
            url,
            data: data.to_path_buf(),
            extra,
            env: env.to_vec(),
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data.clone()
    }

    /// SIGTERM, then waits: the node should finish in-flight work and exit 0.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        self.child.wait().expect("wait")
    }

    /// Sends a signal by name (`STOP`, `CONT`, …) without waiting for anything.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([format!("-{name}").as_str(), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
    }

    /// [`Node::restart`] with other environment variables (e.g. no fail points).
    pub fn restart_with_env(self, env: &[(String, String)]) -> Node {
        let extra = self.extra.clone();
        let data = self.kill();
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        Node::start_with_env(&data, &args, env)
    }

    /// Kills the process and starts a new one on the same data directory.
    pub fn restart(self) -> Node {
        let extra = self.extra.clone();
        let env = self.env.clone();
        let data = self.kill();
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        Node::start_with_env(&data, &args, &env)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    /// The admin key the node was started with (`--admin-key K`), if any.
    pub fn admin_key(&self) -> Option<String> {
        self.extra
            .iter()
            .position(|a| a == "--admin-key")
            .and_then(|i| self.extra.get(i + 1).cloned())
    }

    /// A client that sends the node's admin key with every request (admin routes:
    /// failover, membership, `/debug/faults`).
    pub fn admin_client(&self) -> Client {
        match self.admin_key() {
            Some(key) => self.client().with_bearer(&key),
            None => self.client(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node on a fresh temporary data directory (dropped with the returned guard).
pub fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"), &[]);
    (dir, node)
}

/// A small blocking HTTP client returning (status, JSON body).
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    /// Sent as `Authorization: Bearer` with every request when set.
    bearer: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client::with_timeout(base, Duration::from_secs(60))
    }

    /// A client whose requests give up after `timeout` (for nodes that may hang).
    pub fn with_timeout(base: &str, timeout: Duration) -> Client {
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .expect("client");
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            bearer: None,
        }
    }

    /// This client, sending `Authorization: Bearer <key>` with every request.
    pub fn with_bearer(mut self, key: &str) -> Client {
        self.bearer = Some(key.to_string());
        self
    }

    /// A client for an `https://` node whose certificate chains to `ca_pem`.
    pub fn with_ca(base: &str, ca_pem: &[u8]) -> Client {
        let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60));
        for cert in reqwest::Certificate::from_pem_bundle(ca_pem).expect("CA PEM") {
            builder = builder.add_root_certificate(cert);
        }
        Client {
            http: builder.build().expect("client"),
            base: base.trim_end_matches('/').to_string(),
            bearer: None,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.bearer {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    fn finish(resp: reqwest::Result<reqwest::blocking::Response>) -> reqwest::Result<(u16, Value)> {
        let resp = resp?;
        let status = resp.status().as_u16();
        let text = resp.text()?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub fn try_post(&self, path: &str, body: &Value) -> reqwest::Result<(u16, Value)> {
        Self::finish(self.request(reqwest::Method::POST, path).json(body).send())
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.try_post(path, body).expect("POST")
    }

    /// POST with `Authorization: Bearer <key>` (admin routes).
    pub fn post_with_bearer(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        self.try_post_with_bearer(path, key, body).expect("POST")
    }

    pub fn try_post_with_bearer(
        &self,
        path: &str,
        key: &str,
        body: &Value,
    ) -> reqwest::Result<(u16, Value)> {
        Self::finish(
            self.request(reqwest::Method::POST, path)
                .bearer_auth(key)
                .json(body)
                .send(),
        )
    }

    /// DELETE with `Authorization: Bearer <key>` (admin routes).
    pub fn try_delete_with_bearer(&self, path: &str, key: &str) -> reqwest::Result<(u16, Value)> {
        Self::finish(
            self.request(reqwest::Method::DELETE, path)
                .bearer_auth(key)
                .send(),
        )
    }

    /// POST with one extra header.
    pub fn post_with_header(&self, path: &str, header: (&str, &str), body: &Value) -> (u16, Value) {
        Self::finish(
            self.request(reqwest::Method::POST, path)
                .header(header.0, header.1)
                .json(body)
                .send(),
        )
        .expect("POST")
    }

    /// DELETE with one extra header.
    pub fn delete_with_header(&self, path: &str, header: (&str, &str)) -> (u16, Value) {
        Self::finish(
            self.request(reqwest::Method::DELETE, path)
                .header(header.0, header.1)
                .send(),
        )
        .expect("DELETE")
    }

    pub fn post_raw(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
        Self::finish(self.request(reqwest::Method::POST, path).body(body).send()).expect("POST")
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.try_get(path).expect("GET")
    }

    pub fn try_get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        Self::finish(self.request(reqwest::Method::GET, path).send())
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .expect("GET");
        (resp.status().as_u16(), resp.text().expect("body"))
    }

    pub fn try_delete(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        Self::finish(self.request(reqwest::Method::DELETE, path).send())
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        Self::finish(self.request(reqwest::Method::DELETE, path).send()).expect("DELETE")
    }
}

/// Asserts an error response: the status and `{"error":{"code","message"}}` shape.
#[track_caller]
pub fn assert_error(resp: &(u16, Value), status: u16, code: &str) {
    assert_eq!(resp.0, status, "status for {code}: {}", resp.1);
    assert_eq!(resp.1["error"]["code"], code, "{}", resp.1);
    assert!(
        resp.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        resp.1
    );
}

/// Runs the `needle` command line to completion: (success, stdout, stderr).
pub fn needle(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("NEEDLE_DATA")
        .env_remove("NEEDLE_URL")
        .env_remove("NEEDLE_ADMIN_KEY")
        .output()
        .expect("run needle");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deterministic pseudo-random vectors.
pub fn vectors(seed: u64, n: usize, dims: usize) -> Vec<Vec<f32>> {
    needle_kernels::reference::pseudo_random_floats(seed, n * dims)
        .chunks_exact(dims)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
