//! `DbHealthActor`: knows whether the database answers.
//!
//! It pings the store every `interval` (and on demand when `/health` asks
//! and the last answer is older than that), each ping bounded by the
//! store's own timeout (`db_timeout`), so a database that goes away is
//! reported unhealthy within about `interval + db_timeout`, and a database that comes back is reported
//! healthy at the next ping. Pings run in their own task; the actor's loop
//! only records results and answers questions, so `/health` never waits on
//! the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{CallError, ChildSlot};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub database_ok: bool,
    /// The last ping failure, for operators (never contains secrets).
    pub last_error: Option<String>,
}

pub enum HealthMsg {
    Status(RpcReplyPort<HealthReport>),
    Tick,
    PingDone(Result<(), String>),
    #[cfg(feature = "test-hooks")]
    Crash,
}

pub(crate) struct HealthDeps {
    pub store: Arc<dyn Store>,
    pub interval: Duration,
}

#[derive(Clone)]
pub struct HealthHandle {
    slot: Arc<ChildSlot<HealthMsg>>,
}

impl HealthHandle {
    pub fn new(slot: Arc<ChildSlot<HealthMsg>>) -> Self {
        HealthHandle { slot }
    }

    pub async fn status(&self) -> Result<HealthReport, CallError> {
        self.slot.call(HealthMsg::Status).await
    }

    #[cfg(feature = "test-hooks")]
    pub fn crash(&self) -> bool {
        self.slot.cast(HealthMsg::Crash)
    }
}

pub(crate) struct DbHealthActor;

pub(crate) struct HealthState {
    deps: Arc<HealthDeps>,
    report: HealthReport,
    last_ping: Option<Instant>,
    ping_in_flight: bool,
}

impl HealthState {
    fn ping(&mut self, myself: &ActorRef<HealthMsg>) {
        if self.ping_in_flight {
            return;
        }
        self.ping_in_flight = true;
        let store = Arc::clone(&self.deps.store);
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = store.ping().await.map_err(|e| e.to_string());
            // If the actor restarted meanwhile, the new one pings by itself.
            let _ = myself.cast(HealthMsg::PingDone(result));
        });
    }
}

impl Actor for DbHealthActor {
    type Msg = HealthMsg;
    type State = HealthState;
    type Arguments = Arc<HealthDeps>;

    async fn pre_start(
        &self,
        myself: ActorRef<HealthMsg>,
        deps: Arc<HealthDeps>,
    ) -> Result<HealthState, ActorProcessingErr> {
        myself.send_interval(deps.interval, || HealthMsg::Tick);
        let mut state = HealthState {
            deps,
            // The store answered during start-up, before any actor existed.
            report: HealthReport {
                database_ok: true,
                last_error: None,
            },
            last_ping: None,
            ping_in_flight: false,
        };
        state.ping(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<HealthMsg>,
        message: HealthMsg,
        state: &mut HealthState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HealthMsg::Status(reply) => {
                let stale = state
                    .last_ping
                    .is_none_or(|at| at.elapsed() > state.deps.interval);
                if stale {
                    state.ping(&myself);
                }
                let _ = reply.send(state.report.clone());
            }
            HealthMsg::Tick => state.ping(&myself),
            HealthMsg::PingDone(result) => {
                state.ping_in_flight = false;
                state.last_ping = Some(Instant::now());
                let ok = result.is_ok();
                if ok != state.report.database_ok {
                    match &result {
                        Ok(()) => tracing::info!(event = "db_recovered", "database answers again"),
                        Err(e) => {
                            tracing::warn!(event = "db_unreachable", error = %e, "database health check failed")
                        }
                    }
                }
                metrics::gauge!(crate::telemetry::metrics::DB_HEALTHY).set(if ok {
                    1.0
                } else {
                    0.0
                });
                state.report = HealthReport {
                    database_ok: ok,
                    last_error: result.err(),
                };
            }
            #[cfg(feature = "test-hooks")]
            HealthMsg::Crash => panic!("DbHealthActor crashed on request (test hook)"),
        }
        Ok(())
    }
}
