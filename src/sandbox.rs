//! The built-in marketplace sandbox's documented credentials. A store whose `gateway` is
//! `"sandbox"` talks to an in-process sandbox and may leave its secrets out of the config.

pub const TOP_APP_KEY: &str = "12345678";
pub const TOP_APP_SECRET: &str = "sandbox-top-secret-0123456789abcdef";
pub const TOP_SESSION: &str = "sandbox-top-session";
pub const JOS_APP_KEY: &str = "sandbox-jd-app-key";
pub const JOS_APP_SECRET: &str = "sandbox-jd-secret-0123456789";
pub const JOS_ACCESS_TOKEN: &str = "sandbox-jd-access-token";
pub const OPERATOR_KEY_ID: &str = "sandbox-operator";
pub const OPERATOR_SECRET: &str = "sandbox-operator-secret-0123456789";

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::faults::FaultPlan;
use flagsync_sandbox::jos::{JosConfig, JosSandbox};
use flagsync_sandbox::operator::{OperatorSim, OperatorSimConfig, SimResource};
use flagsync_sandbox::scenario::{ScenarioConfig, generate};
use flagsync_sandbox::server::{RunningServer, serve};
use flagsync_sandbox::top::{TopConfig, TopSandbox};

/// The TOP and JOS simulators served together on one loopback port: TOP at
/// `/router/rest`, JOS at `/routerjson`. Clones share the running server.
#[derive(Clone)]
pub struct EmbeddedSandbox {
    pub top: TopSandbox,
    pub jos: JosSandbox,
    /// The operator's inventory and fulfilment system, at `/v1/...`.
    pub operator: OperatorSim,
    pub clock: SimClock,
    pub top_faults: FaultPlan,
    pub jos_faults: FaultPlan,
    pub operator_faults: FaultPlan,
    server: Arc<RunningServer>,
}

impl std::fmt::Debug for EmbeddedSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSandbox").field("addr", &self.server.addr).finish_non_exhaustive()
    }
}

impl EmbeddedSandbox {
    /// Serves both gateways on `addr` (port 0 for any free port).
    pub async fn start(
        addr: SocketAddr,
        clock: SimClock,
        top: TopConfig,
        jos: JosConfig,
        top_faults: FaultPlan,
        jos_faults: FaultPlan,
    ) -> std::io::Result<Self> {
        let top = TopSandbox::new(top, clock.clone(), top_faults.clone());
        let jos = JosSandbox::new(jos, clock.clone(), jos_faults.clone());
        let operator_faults = FaultPlan::new(0x0bad_5eed);
        let operator = OperatorSim::new(OperatorSimConfig::default(), clock.clone(), operator_faults.clone());
        let server = serve(top.router().merge(jos.router()).merge(operator.router()), addr).await?;
        Ok(Self {
            top,
            jos,
            operator,
            clock,
            top_faults,
            jos_faults,
            operator_faults,
            server: Arc::new(server),
        })
    }

    /// The sandbox the CLI starts for `gateway = "sandbox"` stores: real time, and a
    /// seeded scenario of buyers over the last hours on both platforms.
    pub async fn start_default() -> std::io::Result<Self> {
        Self::start_with_scenario(SocketAddr::from(([127, 0, 0, 1], 0)), 300, 1).await
    }

    pub async fn start_with_scenario(addr: SocketAddr, orders: usize, seed: u64) -> std::io::Result<Self> {
        let clock = SimClock::real();
        let sandbox = Self::start(
            addr,
            clock,
            TopConfig::default(),
            JosConfig::default(),
            FaultPlan::new(seed),
            FaultPlan::new(seed + 1),
        )
        .await?;
        // Anchored to the hour, so runs within the same hour see the same buyers; later
        // runs see what those buyers did since (payments, refunds) as real time passes.
        let now = Utc::now();
        let hour = now
            - TimeDelta::seconds(now.timestamp() % 3600)
            - TimeDelta::nanoseconds(now.timestamp_subsec_nanos().into());
        let start = hour - TimeDelta::hours(6);
        let scenario = |seed| ScenarioConfig {
            seed,
            start,
            duration: TimeDelta::hours(6),
            orders,
            ..ScenarioConfig::default()
        };
        sandbox.top.load_scenario(generate(&scenario(seed)));
        sandbox.jos.load_scenario(generate(&scenario(seed + 1)));
        // The operator holds the demo catalogue of config/sandbox.toml: handsets SKU-00004
        // to SKU-00019 (the marketplaces' merchant codes), and the plan and number pool
        // behind the contract phones SKU-00000 to SKU-00003.
        for n in 4..18 {
            let warehouse = if n % 2 == 0 { "WH-HZ" } else { "WH-SH" };
            sandbox.operator.set_on_hand(&format!("SKU-{n:05}"), warehouse, 300 + 10 * n as i64);
        }
        sandbox.operator.set_resource(SimResource::PlanQuota, "PLAN-5G-129", 500);
        sandbox.operator.set_resource(SimResource::NumberPool, "POOL-HZ-01", 200);
        Ok(sandbox)
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The gateway URL for a store type (`taobao` or `jd`).
    pub fn gateway_for(&self, store_type: &str) -> String {
        match store_type {
            "jd" => format!("{}/routerjson", self.base_url()),
            _ => format!("{}/router/rest", self.base_url()),
        }
    }
}

/// `flagsync sandbox`: serves until Ctrl-C, printing what a client needs.
pub async fn serve_forever(listen: SocketAddr, orders: usize, seed: u64) -> anyhow::Result<ExitCode> {
    let sandbox = EmbeddedSandbox::start_with_scenario(listen, orders, seed).await?;
    let (top_key, top_secret, top_session) = sandbox.top.credentials();
    let (jd_key, jd_secret, jd_token) = sandbox.jos.credentials();
    println!("flagsync sandbox listening on {}", sandbox.base_url());
    println!("  TOP (Taobao/Tmall): {}", sandbox.gateway_for("taobao"));
    println!("    app_key={top_key} app_secret={top_secret} session={top_session}");
    println!("  JOS (JD):           {}", sandbox.gateway_for("jd"));
    println!("    app_key={jd_key} app_secret={jd_secret} access_token={jd_token}");
    let (op_key, op_secret) = sandbox.operator.credentials();
    println!("  operator:           {}/v1/... (stock, fulfilments, shipments)", sandbox.base_url());
    println!("    key_id={op_key} secret={op_secret}");
    println!("  scenario: {orders} orders per platform over the last 6 hours (seed {seed}); Ctrl-C stops");
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_credentials_match_the_sandbox_defaults() {
        let top = TopConfig::default();
        assert_eq!(
            (top.app_key.as_str(), top.app_secret.as_str(), top.session.as_str()),
            (TOP_APP_KEY, TOP_APP_SECRET, TOP_SESSION)
        );
        let jos = JosConfig::default();
        assert_eq!(
            (jos.app_key.as_str(), jos.app_secret.as_str(), jos.access_token.as_str()),
            (JOS_APP_KEY, JOS_APP_SECRET, JOS_ACCESS_TOKEN)
        );
        let operator = OperatorSimConfig::default();
        assert_eq!((operator.key_id.as_str(), operator.secret.as_str()), (OPERATOR_KEY_ID, OPERATOR_SECRET));
    }
}
