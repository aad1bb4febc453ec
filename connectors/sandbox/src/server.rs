//! Running a gateway router on a loopback port, for tests and `flagsync sandbox`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
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

/// Holds every request for `round_trip` before it is served, as the network between a daemon
/// and a remote gateway would (the request travelling out and the reply back, in one wait).
/// Requests wait side by side, as they would on the wire. Zero adds nothing.
pub fn with_round_trip(router: Router, round_trip: Duration) -> Router {
    if round_trip.is_zero() {
        return router;
    }
    router.layer(middleware::from_fn(move |request: Request, next: Next| async move {
        tokio::time::sleep(round_trip).await;
        next.run(request).await
    }))
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
