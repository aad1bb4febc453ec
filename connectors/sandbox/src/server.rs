//! Running a gateway router on a loopback port, for tests and `flagsync sandbox`.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A server running in the background; dropped, it stops.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on `addr` (use port 0 for any free port).
pub async fn serve(router: Router, addr: SocketAddr) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(error = %error, "sandbox server stopped");
        }
    });
    Ok(RunningServer { addr, task })
}
