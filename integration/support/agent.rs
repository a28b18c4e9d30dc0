//! A webserver's load agent for tests: answers every connection with the
//! line it was last told to say, like the agents HAProxy's `agent-check`
//! reads.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

pub struct AgentServer {
    pub port: u16,
    line: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AgentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AgentServer {
    /// Listens on `ip:port` (0: any free port), saying `line`.
    pub async fn start(ip: &str, port: u16, line: &str) -> AgentServer {
        let listener = TcpListener::bind((ip, port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let line = Arc::new(Mutex::new(line.to_string()));
        let said = line.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let reply = format!("{}\n", said.lock().unwrap());
                tokio::spawn(async move {
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        AgentServer { port, line, task }
    }

    pub fn say(&self, line: &str) {
        *self.line.lock().unwrap() = line.to_string();
    }
}
