//! The daemon's own jobs ([`fvfs_engine::jobs::Job`]): a flush (everything accepted so
//! far durable in every tier) and an eviction, which need the replicators and the
//! evictor only a serving daemon has. Their errors are the API's, so the routes answer
//! them as they are.

use std::sync::Arc;

use fvfs_api::reports::{Eviction, Flushed};
use fvfs_api::ErrorCode;
use fvfs_engine::jobs::{Job, Jobs};
use fvfs_fsck::Progress;
use fvfs_manifest::Pending;
use fvfs_tiering::{Evictor, Replicator, TierId};

use super::http::ApiError;
use super::State;

/// Makes everything accepted so far durable on the local tier, then waits until every
/// colder tier holds it too; 503 (naming the tier and why) if one is unavailable.
pub struct Flush {
    staged: Arc<Pending>,
    replicators: Vec<Arc<Replicator>>,
}

impl Flush {
    pub fn of(state: &State) -> Self {
        Self {
            staged: state.staged.clone(),
            replicators: state.replicators.clone(),
        }
    }
}

impl Job for Flush {
    const KIND: &'static str = "flush";
    type Report = Flushed;
    type Error = ApiError;

    async fn run(&self, store: &Jobs, progress: &Arc<Progress>) -> Result<Flushed, ApiError> {
        progress.phase("local", 0);
        store.repo().checkpoint(&self.staged).await?;
        let mut tiers = vec![TierId::Local.name().to_owned()];
        for r in &self.replicators {
            progress.phase(r.name, 0);
            r.drain(store.repo())
                .await
                .map_err(|e| ApiError::new(ErrorCode::TierUnavailable, e))?;
            tiers.push(r.name.to_owned());
        }
        Ok(Flushed {
            flushed: true,
            tiers,
        })
    }

    fn outcome(&self, flushed: &Flushed) -> (bool, String) {
        (true, format!("durable in {}", flushed.tiers.join(", ")))
    }
}

/// Eviction now: every tier over its high watermark goes under its low one, dropping
/// only copies that S3 holds.
pub struct Evict(pub Option<Arc<Evictor>>);

impl Job for Evict {
    const KIND: &'static str = "evict";
    type Report = Eviction;
    type Error = ApiError;

    async fn run(&self, _: &Jobs, progress: &Arc<Progress>) -> Result<Eviction, ApiError> {
        let Some(evictor) = &self.0 else {
            return Ok(Eviction {
                detail: Some("no colder tier: the local tier is the only copy".into()),
                ..Eviction::default()
            });
        };
        progress.phase("evicting", 0);
        let tiers = evictor
            .run()
            .await
            .map_err(|e| ApiError::new(ErrorCode::EvictFailed, e))?;
        Ok(Eviction {
            evicted_chunks: tiers.iter().map(|t| t.chunks).sum(),
            evicted_bytes: tiers.iter().map(|t| t.bytes).sum(),
            tiers,
            detail: None,
        })
    }

    fn outcome(&self, e: &Eviction) -> (bool, String) {
        let summary = match &e.detail {
            Some(why) => why.clone(),
            None => format!(
                "{} chunks, {} bytes evicted",
                e.evicted_chunks, e.evicted_bytes
            ),
        };
        (true, summary)
    }
}
