//! The cut-over from the old FastAPI service: how far it has come.
//!
//! At start-up authd logs one line (`event="legacy_accounts"`) with the old
//! accounts, those adopted and those whose password is already argon2id,
//! and a WARN listing old accounts whose e-mails differ only by case (they
//! are never merged; each signs in with its e-mail spelt exactly). The same
//! figures are the gauge `authd_legacy_accounts{state}`, refreshed every
//! [`PROGRESS_INTERVAL`], and `authd legacy-report` prints them.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{LegacyCounts, Store, StoreError};
use crate::telemetry::metrics as m;

/// How often the progress gauge is refreshed (it also indexes accounts
/// the old service created meanwhile).
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_secs(60);

/// Most groups of case-only duplicates listed in the log and the report.
const LISTED_GROUPS: i64 = 100;

/// The progress, and the groups of case-only duplicate e-mails.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Report {
    pub old_accounts: i64,
    pub adopted: i64,
    pub upgraded: i64,
    /// Old accounts not adopted yet, plus adopted ones still on bcrypt.
    pub not_upgraded: i64,
    pub ambiguous_groups: Vec<AmbiguousGroup>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct AmbiguousGroup {
    pub email_folded: String,
    pub legacy_ids: Vec<i64>,
}

/// `None` when the store reads no old tables.
pub(crate) async fn report(store: &dyn Store) -> Result<Option<Report>, StoreError> {
    let Some(legacy) = store.legacy() else {
        return Ok(None);
    };
    let counts = legacy.sync_and_count().await?;
    publish(&counts);
    let groups = legacy.ambiguous_accounts(LISTED_GROUPS).await?;
    Ok(Some(Report {
        old_accounts: counts.old_accounts,
        adopted: counts.adopted,
        upgraded: counts.upgraded,
        not_upgraded: counts.old_accounts - counts.upgraded,
        ambiguous_groups: groups
            .into_iter()
            .map(|(email_folded, legacy_ids)| AmbiguousGroup {
                email_folded,
                legacy_ids,
            })
            .collect(),
    }))
}

fn publish(counts: &LegacyCounts) {
    ::metrics::gauge!(m::LEGACY_ACCOUNTS, "state" => "old").set(counts.old_accounts as f64);
    ::metrics::gauge!(m::LEGACY_ACCOUNTS, "state" => "adopted").set(counts.adopted as f64);
    ::metrics::gauge!(m::LEGACY_ACCOUNTS, "state" => "upgraded").set(counts.upgraded as f64);
    ::metrics::gauge!(m::LEGACY_ACCOUNTS, "state" => "not_upgraded")
        .set((counts.old_accounts - counts.upgraded) as f64);
}

/// Logs the start-up line and keeps the gauge fresh; `None` without old
/// tables.
pub(crate) async fn start(
    store: Arc<dyn Store>,
) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
    let Some(report) = report(&*store).await? else {
        return Ok(None);
    };
    tracing::info!(
        event = "legacy_accounts",
        old_accounts = report.old_accounts,
        adopted = report.adopted,
        upgraded = report.upgraded,
        not_upgraded = report.not_upgraded,
        "reading the old service's accounts and tokens (legacy_fastapi)"
    );
    if !report.ambiguous_groups.is_empty() {
        tracing::warn!(
            event = "legacy_email_case_duplicates",
            groups = ?report.ambiguous_groups,
            "old accounts whose e-mails differ only by case: none is merged; each signs in \
             with its e-mail spelt exactly as registered (`authd legacy-report` lists them)"
        );
    }
    Ok(Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Some(legacy) = store.legacy() {
                match legacy.sync_and_count().await {
                    Ok(counts) => publish(&counts),
                    Err(e) => tracing::debug!(error = %e, "legacy progress not refreshed"),
                }
            }
        }
    })))
}
