//! The cluster `tests/ha` runs: etcd and two PostgreSQL nodes under
//! Patroni, from the shipped `config/patroni/node{1,2}.yml` rendered with
//! free ports and a temporary directory, as the `postgres` user when the
//! test runs as root; its faults (kill -9 of a postmaster, switchover, etcd
//! stopped) and what the test reads from it (roles, session rows, logs).
//! Everything is stopped when the [`Cluster`] is dropped.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, free_port, wait_for};

const NODE1: &str = include_str!("../../config/patroni/node1.yml");
const NODE2: &str = include_str!("../../config/patroni/node2.yml");

/// Bootstrapping the cluster, a node rejoining as a standby.
pub const CLUSTER_LIMIT: Duration = Duration::from_secs(90);
pub const SUPERUSER_PASSWORD: &str = "ha-test-superuser-9d1f";

/// The binaries the test runs.
pub struct Tools {
    patroni: PathBuf,
    patronictl: PathBuf,
    etcd: PathBuf,
    pg_bin: PathBuf,
}

/// The tools, or `None` (skip reported) when one is missing.
pub fn tools() -> Option<Tools> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.exists());
    // The newest installed PostgreSQL.
    let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .max_by_key(|bin| {
            bin.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
    let found = (
        find(&["/usr/bin/patroni", "/usr/local/bin/patroni"]),
        find(&["/usr/bin/patronictl", "/usr/local/bin/patronictl"]),
        find(&["/usr/bin/etcd", "/usr/local/bin/etcd"]),
        pg_bin,
    );
    if let (Some(patroni), Some(patronictl), Some(etcd), Some(pg_bin)) = found {
        return Some(Tools {
            patroni,
            patronictl,
            etcd,
            pg_bin,
        });
    }
    if std::env::var("AUTHD_REQUIRE_PATRONI").as_deref() == Ok("1") {
        panic!(
            "Patroni, etcd or PostgreSQL is not installed and AUTHD_REQUIRE_PATRONI=1 \
             (apt-get install -y patroni etcd-server etcd-client postgresql)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (patroni, etcd or postgresql not installed): {}",
        support::test_name()
    );
    None
}

/// PostgreSQL refuses to run as root: as root, the cluster's processes run
/// as `postgres` (uid, gid), and its directory belongs to them.
fn db_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").expect("a C string");
    // SAFETY: getpwnam returns NULL or a pointer to a static record, read
    // at once, on this thread.
    let record = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!record.is_null(), "running as root needs a postgres user");
    // SAFETY: checked non-NULL above.
    let (uid, gid) = unsafe { ((*record).pw_uid, (*record).pw_gid) };
    Some((uid, gid))
}

/// A child process of the cluster; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(mut command: Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("log file");
        if let Some((uid, gid)) = db_owner() {
            command.uid(uid).gid(gid);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Proc { child }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, signal) };
    }

    /// SIGTERM, up to `limit` to exit, then SIGKILL.
    fn stop(&mut self, limit: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

/// One Patroni node: its ports and process.
pub struct Node {
    name: &'static str,
    pub pg_port: u16,
    rest_port: u16,
    config: PathBuf,
    patroni: Option<Proc>,
}

/// etcd and two Patroni nodes in a temporary directory; everything is
/// stopped on drop.
pub struct Cluster {
    tools: Tools,
    dir: tempfile::TempDir,
    etcd_client: u16,
    etcd_peer: u16,
    pub etcd: Option<Proc>,
    pub nodes: [Node; 2],
    rest: reqwest::Client,
}

impl Cluster {
    /// Starts etcd and node1, waits until it leads, then node2, and waits
    /// until it is the synchronous standby.
    pub async fn start(tools: Tools) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        if let Some((uid, gid)) = db_owner() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let node = |name, template: &str, path: &str| {
            let node = Node {
                name,
                pg_port: free_port(),
                rest_port: free_port(),
                config: dir.path().join(path),
                patroni: None,
            };
            (node, template.to_owned())
        };
        let (n1, t1) = node("node1", NODE1, "node1.yml");
        let (n2, t2) = node("node2", NODE2, "node2.yml");
        let etcd_client = free_port();
        let d = dir.path().display().to_string();
        let render = |template: &str| {
            let text = template
                .replace("${SCOPE}", "authd-ha-test")
                .replace("${ETCD_HOSTS}", &format!("127.0.0.1:{etcd_client}"))
                .replace("${NODE1_REST}", &format!("127.0.0.1:{}", n1.rest_port))
                .replace("${NODE2_REST}", &format!("127.0.0.1:{}", n2.rest_port))
                .replace("${NODE1_PG}", &format!("127.0.0.1:{}", n1.pg_port))
                .replace("${NODE2_PG}", &format!("127.0.0.1:{}", n2.pg_port))
                .replace("${DATA_DIR}", &d)
                .replace("${SOCKET_DIR}", &d)
                .replace("${BIN_DIR}", &tools.pg_bin.display().to_string())
                .replace("${NETWORK}", "127.0.0.1/32")
                .replace("${SUPERUSER_PASSWORD}", SUPERUSER_PASSWORD)
                .replace("${REPLICATION_PASSWORD}", "ha-test-replication-4e2a");
            assert!(!text.contains("${"), "a placeholder was left: {text}");
            text
        };
        std::fs::write(&n1.config, render(&t1)).expect("node1.yml");
        std::fs::write(&n2.config, render(&t2)).expect("node2.yml");
        let mut cluster = Cluster {
            tools,
            dir,
            etcd_client,
            etcd_peer: free_port(),
            etcd: None,
            nodes: [n1, n2],
            rest: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .no_proxy()
                .build()
                .expect("HTTP client"),
        };
        cluster.start_etcd().await;
        cluster.start_node(0);
        cluster.wait_role(0, "primary", CLUSTER_LIMIT).await;
        cluster.start_node(1);
        cluster.wait_role(1, "sync", CLUSTER_LIMIT).await;
        cluster
    }

    pub async fn start_etcd(&mut self) {
        let d = self.dir.path();
        let client = format!("http://127.0.0.1:{}", self.etcd_client);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer);
        let mut command = Command::new(&self.tools.etcd);
        command
            .arg("--name=ha")
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ha={peer}"));
        self.etcd = Some(Proc::spawn(command, &d.join("etcd.log")));
        let health = format!("{client}/health");
        let rest = self.rest.clone();
        wait_for("etcd to answer", CLUSTER_LIMIT, || async {
            let reply = rest.get(&health).send().await.ok()?;
            reply.status().is_success().then_some(())
        })
        .await;
    }

    fn start_node(&mut self, index: usize) {
        let node = &self.nodes[index];
        let mut command = Command::new(&self.tools.patroni);
        command.arg(&node.config);
        let log = self.dir.path().join(format!("{}.log", node.name));
        self.nodes[index].patroni = Some(Proc::spawn(command, &log));
    }

    /// Whether Patroni's REST API of node `index` answers 200 for `role`
    /// (`primary`, `sync`, `replica`, `health`).
    pub async fn has_role(&self, index: usize, role: &str) -> bool {
        let url = format!("http://127.0.0.1:{}/{role}", self.nodes[index].rest_port);
        matches!(self.rest.get(url).send().await, Ok(r) if r.status().as_u16() == 200)
    }

    pub async fn wait_role(&self, index: usize, role: &str, limit: Duration) {
        let what = format!("{} to be {role}", self.nodes[index].name);
        let deadline = Instant::now() + limit;
        while !self.has_role(index, role).await {
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what}; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The multi-host URL of the cluster, standby (node2) first.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{},127.0.0.1:{}/authd\
             ?target_session_attrs=read-write",
            self.nodes[1].pg_port, self.nodes[0].pg_port
        )
    }

    /// The machine of node `index` lost: SIGKILL to its Patroni, then to
    /// its postmaster, so nothing restarts it or hands its role over.
    pub fn lose_node(&self, index: usize) {
        if let Some(patroni) = &self.nodes[index].patroni {
            // A killed process runs no more code: it cannot restart
            // PostgreSQL after this (it is reaped when dropped).
            patroni.signal(libc::SIGKILL);
        }
        self.kill_postmaster(index);
    }

    /// Starts node `index`'s Patroni again (after [`Self::lose_node`]).
    pub fn restart_node(&mut self, index: usize) {
        self.start_node(index);
    }

    /// SIGKILL to node `index`'s postmaster (read from its pid file).
    pub fn kill_postmaster(&self, index: usize) {
        let pid_file = self
            .dir
            .path()
            .join(self.nodes[index].name)
            .join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let pid: libc::pid_t = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid in postmaster.pid");
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9");
    }

    /// `patronictl switchover --force` (to the only other node).
    pub fn switchover(&self) {
        let mut command = Command::new(&self.tools.patronictl);
        command
            .arg("-c")
            .arg(&self.nodes[0].config)
            .arg("switchover")
            .arg("--force");
        if let Some((uid, gid)) = db_owner() {
            command.uid(uid).gid(gid);
        }
        let output = command.output().expect("patronictl runs");
        assert!(
            output.status.success(),
            "patronictl switchover failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The newest lines of every log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["etcd.log", "node1.log", "node2.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("--- {name}\n{}\n", tail.join("\n")));
        }
        out
    }

    /// A connection to the primary (the multi-host URL finds it).
    async fn primary(&self) -> tokio_postgres::Client {
        let config: tokio_postgres::Config = self.url().parse().expect("the URL parses");
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("the test reaches the primary");
        tokio::spawn(connection);
        client
    }

    /// Every authd session row's (generation, revoked), read on the
    /// primary.
    pub async fn sessions(&self) -> std::collections::HashMap<uuid::Uuid, (i64, bool)> {
        let client = self.primary().await;
        let rows = client
            .query(
                "SELECT id, generation, revoked_at_ms IS NOT NULL FROM authd.sessions",
                &[],
            )
            .await
            .expect("sessions");
        rows.iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect()
    }

    /// How many authd sessions the user with this e-mail has, read on the
    /// primary.
    pub async fn sessions_of(&self, email: &str) -> i64 {
        let client = self.primary().await;
        client
            .query_one(
                "SELECT count(*) FROM authd.sessions s JOIN authd.users u ON u.id = s.user_id \
                 WHERE u.email = $1",
                &[&email],
            )
            .await
            .expect("the user's sessions")
            .get(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Patroni stops its PostgreSQL on SIGTERM; a postmaster left behind
        // (Patroni killed) is stopped through its pid file.
        for node in &mut self.nodes {
            node.patroni.take();
        }
        for node in &self.nodes {
            let pid_file = self.dir.path().join(node.name).join("postmaster.pid");
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        self.etcd.take();
    }
}
