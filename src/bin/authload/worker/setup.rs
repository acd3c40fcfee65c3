//! A connection's setup, before the measured window: the connection
//! opened, its user created (or signed in, when a previous attempt did
//! create it), and for `revoke` the pool of sessions signed in to be
//! revoked.

use std::time::Duration;

use bytes::Bytes;

use super::{Role, Worker};
use crate::exchange::check;
use crate::ops::{ErrKind, Op};

impl Worker {
    fn needs_user(&self) -> bool {
        match self.role {
            Role::Tab { lead, .. } => lead,
            _ => self.plan.scenario.needs_own_user(),
        }
    }

    /// Opens the connection, creates the user the scenario needs and, for
    /// a pool, signs in the pool's sessions.
    pub async fn setup(&mut self) -> Result<(), String> {
        self.setup_user().await?;
        let want = match &self.role {
            Role::Pool { want, .. } => *want,
            _ => return Ok(()),
        };
        let mut failures = 0u64;
        while self.pool_len() < want {
            let request = self.request(Op::Signin, None);
            let answer = tokio::time::timeout(self.plan.timeout, self.client.send(request)).await;
            let (status, body) = match answer {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) | Err(_) => (0, Bytes::new()),
            };
            match check(Op::Signin, status, &body) {
                (Ok(()), Some(token)) => {
                    if let Role::Pool { tokens, .. } = &mut self.role {
                        tokens.push(token);
                    }
                }
                // Transient (a full hashing queue, a dropped connection): retry.
                (Err(ErrKind::Status(0 | 503 | 429)), _) if failures < 50 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(20 * failures.min(10))).await;
                }
                (result, _) => {
                    return Err(format!(
                        "pool sign-in of {} answered {status} ({result:?}): {}",
                        self.email,
                        String::from_utf8_lossy(&body)
                    ))
                }
            }
        }
        Ok(())
    }

    /// Opens the connection and, if the scenario needs it, creates the
    /// connection's (or its session's) user. Retries what looks transient
    /// (503, 429, transport).
    pub(super) async fn setup_user(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..10u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt.min(10))).await;
            }
            if !self.needs_user() {
                match self.client.connect().await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            let op = if last.starts_with("409") {
                Op::Signin
            } else {
                Op::Signup
            };
            let request = self.request(op, None);
            match tokio::time::timeout(self.plan.timeout, self.client.send(request)).await {
                Err(_) => {
                    self.client.drop_connection();
                    last = "timeout".into();
                }
                Ok(Err(e)) => last = e.to_string(),
                Ok(Ok((status, body))) => match check(op, status, &body) {
                    (Ok(()), token) => {
                        self.keep_setup_token(token.unwrap_or_default());
                        return Ok(());
                    }
                    (Err(ErrKind::Status(409)), _) => last = "409 (user exists)".into(),
                    (Err(ErrKind::Status(503)), _) | (Err(ErrKind::Status(429)), _) => {
                        last = format!("{status}: {}", String::from_utf8_lossy(&body));
                    }
                    (Err(kind), _) => {
                        return Err(format!(
                            "{} of {} answered {kind}: {}",
                            op.label(),
                            self.email,
                            String::from_utf8_lossy(&body)
                        ))
                    }
                },
            }
        }
        Err(format!("connection {} setup failed: {last}", self.id))
    }

    /// The token the user's creation (or sign-in) answered with, handed to
    /// whatever the role keeps its sessions in.
    fn keep_setup_token(&mut self, token: String) {
        match &mut self.role {
            Role::Chain => self.set_token(&token),
            Role::Pool { tokens, .. } => tokens.push(token),
            Role::Tab { session, .. } => {
                session.after_signin(Some(&token));
            }
            Role::Replay(cycle) => {
                cycle.after(
                    Op::Signin,
                    Some(200),
                    Ok(()),
                    Some(&token),
                    &mut Default::default(),
                );
            }
        }
    }
}
