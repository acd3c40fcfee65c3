//! The supervisor: starts `UserActor`, `TokenActor` and `DbHealthActor` as
//! linked children, and restarts a child that fails.
//!
//! Every failure is logged at WARN (`event = "actor_failed"`, with the actor,
//! the reason and the restart count) and counted. Restarts back off
//! exponentially (first at once, then 50 ms, 100 ms, ... up to 5 s). A child
//! that fails more than `restart_limit` times within `restart_window` is not
//! restarted again: the supervisor logs `event = "supervisor_gave_up"` at
//! ERROR and stops, and the process exits non-zero rather than limping on.
//! While a child is down its [`ChildSlot`] is empty, so requests for it get
//! 503 at once. How many failures each child has left before that point is
//! published as `authd_supervisor_restarts_left`, for alerting before it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::{timeout_at, Instant};

use super::db_health::{DbHealthActor, HealthDeps, HealthHandle, HealthMsg};
use super::token::{TokenActor, TokenDeps, TokenHandle, TokenMsg};
use super::user::{UserActor, UserDeps, UserHandle, UserMsg};
use super::ChildSlot;
use crate::telemetry::metrics as m;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    User,
    Token,
    DbHealth,
}

impl ActorKind {
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::User => "UserActor",
            ActorKind::Token => "TokenActor",
            ActorKind::DbHealth => "DbHealthActor",
        }
    }
}

impl std::fmt::Display for ActorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Restarts per actor since start-up (for metrics and tests).
#[derive(Default)]
pub struct RestartCounters {
    user: AtomicU64,
    token: AtomicU64,
    db_health: AtomicU64,
}

impl RestartCounters {
    fn counter(&self, kind: ActorKind) -> &AtomicU64 {
        match kind {
            ActorKind::User => &self.user,
            ActorKind::Token => &self.token,
            ActorKind::DbHealth => &self.db_health,
        }
    }

    pub fn get(&self, kind: ActorKind) -> u64 {
        self.counter(kind).load(Ordering::Relaxed)
    }
}

/// The handles the HTTP layer uses, plus what the supervisor refills.
#[derive(Clone)]
pub struct Services {
    pub users: UserHandle,
    pub tokens: TokenHandle,
    pub health: HealthHandle,
    pub restarts: Arc<RestartCounters>,
    pub children: ChildrenUp,
}

/// Which children are running at this moment (a slot is empty while its
/// child is down or restarting), for the readiness probe.
#[derive(Clone)]
pub struct ChildrenUp {
    user: Arc<ChildSlot<UserMsg>>,
    token: Arc<ChildSlot<TokenMsg>>,
    health: Arc<ChildSlot<HealthMsg>>,
}

impl ChildrenUp {
    /// The children that are down now (empty: all up).
    pub fn down(&self) -> Vec<ActorKind> {
        [
            (ActorKind::User, self.user.get().is_some()),
            (ActorKind::Token, self.token.get().is_some()),
            (ActorKind::DbHealth, self.health.get().is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, up)| (!up).then_some(kind))
        .collect()
    }
}

/// Everything the supervisor needs to (re)start its children.
pub(crate) struct SupervisorArgs {
    pub user_deps: Arc<UserDeps>,
    pub user_slot: Arc<ChildSlot<UserMsg>>,
    pub token_deps: Arc<TokenDeps>,
    pub health_deps: Arc<HealthDeps>,
    pub health_slot: Arc<ChildSlot<HealthMsg>>,
    pub restarts: Arc<RestartCounters>,
    pub restart_limit: usize,
    pub restart_window: Duration,
}

pub(crate) enum SupervisorMsg {
    /// Start (again) the child of this kind.
    Start(ActorKind),
    /// A failure of this kind has left the restart window: publish the
    /// budget it gives back.
    Forget(ActorKind),
}

pub(crate) struct Supervisor;

pub(crate) struct SupervisorState {
    args: SupervisorArgs,
    children: HashMap<ActorId, ActorKind>,
    /// Recent failure instants per child, for backoff and the give-up limit.
    failures: HashMap<ActorKind, VecDeque<Instant>>,
}

const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            args,
            children: HashMap::new(),
            failures: HashMap::new(),
        };
        // Token first: the other two only talk to it.
        for kind in [ActorKind::Token, ActorKind::User, ActorKind::DbHealth] {
            state.start(kind, myself.get_cell()).await?;
            // From zero, so that the first failure is an increase.
            metrics::counter!(m::ACTOR_RESTARTS, "actor" => kind.name()).increment(0);
            state.publish_restarts_left(kind);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Start(kind) => {
                if let Err(e) = state.start(kind, myself.get_cell()).await {
                    // pre_start failed: count it as another failure.
                    state.failed(kind, &e.to_string(), &myself);
                } else {
                    tracing::warn!(
                        event = "actor_restarted",
                        actor = kind.name(),
                        restart_count = state.args.restarts.get(kind),
                        "supervisor restarted a child actor"
                    );
                }
            }
            SupervisorMsg::Forget(kind) => {
                state.recent_failures(kind);
                state.publish_restarts_left(kind);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, reason) => {
                if let Some(kind) = state.children.remove(&cell.get_id()) {
                    state.clear_slot(kind);
                    state.failed(kind, &reason.to_string(), &myself);
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                // A clean stop only happens at shutdown: do not restart.
                if let Some(kind) = state.children.remove(&cell.get_id()) {
                    state.clear_slot(kind);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn start(&mut self, kind: ActorKind, me: ActorCell) -> Result<(), ActorProcessingErr> {
        let a = &self.args;
        let id = match kind {
            ActorKind::User => {
                let (r, _) =
                    Actor::spawn_linked(None, UserActor, Arc::clone(&a.user_deps), me).await?;
                a.user_slot.set(Some(r.clone()));
                r.get_id()
            }
            ActorKind::Token => {
                let (r, _) =
                    Actor::spawn_linked(None, TokenActor, Arc::clone(&a.token_deps), me).await?;
                a.token_deps.slot.set(Some(r.clone()));
                r.get_id()
            }
            ActorKind::DbHealth => {
                let (r, _) =
                    Actor::spawn_linked(None, DbHealthActor, Arc::clone(&a.health_deps), me)
                        .await?;
                a.health_slot.set(Some(r.clone()));
                r.get_id()
            }
        };
        self.children.insert(id, kind);
        Ok(())
    }

    fn clear_slot(&self, kind: ActorKind) {
        match kind {
            ActorKind::User => self.args.user_slot.set(None),
            ActorKind::Token => self.args.token_deps.slot.set(None),
            ActorKind::DbHealth => self.args.health_slot.set(None),
        }
    }

    /// The failures of `kind` within the restart window, after dropping
    /// older ones.
    fn recent_failures(&mut self, kind: ActorKind) -> &mut VecDeque<Instant> {
        let now = Instant::now();
        let window = self.args.restart_window;
        let recent = self.failures.entry(kind).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            recent.pop_front();
        }
        recent
    }

    /// Publishes how many more failures of `kind` the window allows.
    fn publish_restarts_left(&self, kind: ActorKind) {
        let in_window = self.failures.get(&kind).map_or(0, VecDeque::len);
        let left = self.args.restart_limit.saturating_sub(in_window);
        metrics::gauge!(m::SUPERVISOR_RESTARTS_LEFT, "actor" => kind.name()).set(left as f64);
    }

    /// Records a failure and schedules the restart, or gives up.
    fn failed(&mut self, kind: ActorKind, reason: &str, myself: &ActorRef<SupervisorMsg>) {
        let window = self.args.restart_window;
        let recent = self.recent_failures(kind);
        recent.push_back(Instant::now());
        let in_window = recent.len();
        self.publish_restarts_left(kind);
        let restart_count = self
            .args
            .restarts
            .counter(kind)
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        metrics::counter!(m::ACTOR_RESTARTS, "actor" => kind.name()).increment(1);
        if in_window > self.args.restart_limit {
            tracing::error!(
                event = "supervisor_gave_up",
                actor = kind.name(),
                reason,
                failures_in_window = in_window,
                window_secs = window.as_secs(),
                "child actor keeps failing; supervisor stops and authd exits"
            );
            myself.stop(Some(format!("{kind} failed {in_window} times")));
            return;
        }
        // Just past the window, so that this failure is out of it by then.
        myself.send_after(window + Duration::from_millis(1), move || {
            SupervisorMsg::Forget(kind)
        });
        let delay = backoff(in_window);
        tracing::warn!(
            event = "actor_failed",
            actor = kind.name(),
            reason,
            restart_count,
            restart_in_ms = delay.as_millis() as u64,
            "child actor failed; restarting"
        );
        if delay.is_zero() {
            let _ = myself.cast(SupervisorMsg::Start(kind));
        } else {
            myself.send_after(delay, move || SupervisorMsg::Start(kind));
        }
    }
}

/// No delay for the first failure in the window, then doubling from 50 ms.
fn backoff(failures_in_window: usize) -> Duration {
    if failures_in_window <= 1 {
        return Duration::ZERO;
    }
    let exponent = (failures_in_window - 2).min(16) as u32;
    (BACKOFF_BASE * 2u32.pow(exponent)).min(BACKOFF_MAX)
}

/// The running actor system.
pub(crate) struct ActorSystem {
    pub services: Services,
    token_deps: Arc<TokenDeps>,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: tokio::task::JoinHandle<()>,
}

impl ActorSystem {
    /// Spawns the supervisor (which spawns the children).
    pub(crate) async fn start(
        token_deps: Arc<TokenDeps>,
        user_deps: impl FnOnce(TokenHandle) -> UserDeps,
        health_deps: HealthDeps,
        request_timeout: Duration,
        restart_limit: usize,
        restart_window: Duration,
    ) -> Result<Self, ractor::SpawnErr> {
        let tokens = TokenHandle::new(&token_deps);
        let user_slot = ChildSlot::new(ActorKind::User, request_timeout);
        let health_slot = ChildSlot::new(ActorKind::DbHealth, request_timeout);
        let restarts = Arc::new(RestartCounters::default());
        let args = SupervisorArgs {
            user_deps: Arc::new(user_deps(tokens.clone())),
            user_slot: Arc::clone(&user_slot),
            token_deps,
            health_deps: Arc::new(health_deps),
            health_slot: Arc::clone(&health_slot),
            restarts: Arc::clone(&restarts),
            restart_limit,
            restart_window,
        };
        let shared_token_deps = Arc::clone(&args.token_deps);
        let children = ChildrenUp {
            user: Arc::clone(&user_slot),
            token: Arc::clone(&shared_token_deps.slot),
            health: Arc::clone(&health_slot),
        };
        let (supervisor, supervisor_done) = Actor::spawn(None, Supervisor, args).await?;
        Ok(ActorSystem {
            services: Services {
                users: UserHandle::new(user_slot),
                tokens,
                health: HealthHandle::new(health_slot),
                restarts,
                children,
            },
            token_deps: shared_token_deps,
            supervisor,
            supervisor_done,
        })
    }

    /// Completes when the supervisor stops by itself, which only happens
    /// when it gave up on a child.
    pub(crate) async fn gave_up(&mut self) {
        let _ = (&mut self.supervisor_done).await;
    }

    /// Stops the children after they finish what is in their mailboxes,
    /// then the supervisor, then waits for the session writers to flush:
    /// all by `deadline`, each step with what the one before it left. A
    /// child still busy at the deadline is killed (its work abandoned:
    /// nobody waits for its answer any more).
    pub(crate) async fn shutdown(mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        self.supervisor
            .get_cell()
            .drain_children_and_wait(Some(left))
            .await;
        // Stopping the supervisor kills the children that did not drain.
        self.supervisor.stop(None);
        if timeout_at(deadline, &mut self.supervisor_done)
            .await
            .is_err()
        {
            tracing::warn!(
                event = "actors_stop_timeout",
                "actors did not stop by the shutdown deadline; killed"
            );
            self.supervisor.kill();
        }
        self.token_deps.flush_writers(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(50));
        assert_eq!(backoff(3), Duration::from_millis(100));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
