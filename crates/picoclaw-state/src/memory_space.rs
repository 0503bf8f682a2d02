//! Memory indexes of several agents in one database: each agent's sources are kept under a
//! prefix of its own (`agent:<id>/memory/MEMORY.md`), and an agent indexes, lists and finds only
//! its own. The default agent keeps the unprefixed sources it had before there were several
//! agents, and never sees a prefixed one.

use async_trait::async_trait;
use picoclaw_api::state::{IndexedSource, MemoryHit, MemoryNote, MemoryStore, StateError};
use std::sync::Arc;

/// The prefix every agent's sources but the default one's carry.
const AGENT_PREFIX: &str = "agent:";

/// One agent's part of a shared memory index.
pub struct MemorySpace {
    inner: Arc<dyn MemoryStore>,
    /// `agent:<id>/`, or empty for the default agent.
    prefix: String,
}

impl std::fmt::Debug for MemorySpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySpace")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl MemorySpace {
    /// The default agent's part: the unprefixed sources.
    pub fn default_agent(inner: Arc<dyn MemoryStore>) -> Self {
        Self {
            inner,
            prefix: String::new(),
        }
    }

    /// Agent `id`'s part.
    pub fn agent(inner: Arc<dyn MemoryStore>, id: &str) -> Self {
        Self {
            inner,
            prefix: format!("{AGENT_PREFIX}{id}/"),
        }
    }

    fn mine(&self, stored: &str) -> Option<String> {
        if self.prefix.is_empty() {
            (!stored.starts_with(AGENT_PREFIX)).then(|| stored.to_owned())
        } else {
            stored.strip_prefix(&self.prefix).map(str::to_owned)
        }
    }

    fn stored(&self, source: &str) -> String {
        format!("{}{source}", self.prefix)
    }
}

#[async_trait]
impl MemoryStore for MemorySpace {
    async fn index_source(
        &self,
        source: &str,
        fingerprint: &str,
        notes: &[MemoryNote],
    ) -> Result<(), StateError> {
        let stored = self.stored(source);
        let notes: Vec<MemoryNote> = notes
            .iter()
            .map(|n| {
                let mut n = n.clone();
                n.source = self.stored(&n.source);
                n
            })
            .collect();
        self.inner.index_source(&stored, fingerprint, &notes).await
    }

    async fn remove_source(&self, source: &str) -> Result<bool, StateError> {
        self.inner.remove_source(&self.stored(source)).await
    }

    async fn sources(&self) -> Result<Vec<IndexedSource>, StateError> {
        Ok(self
            .inner
            .sources()
            .await?
            .into_iter()
            .filter_map(|mut s| {
                s.source = self.mine(&s.source)?;
                Some(s)
            })
            .collect())
    }

    async fn search(&self, query: &str, limit: usize) -> Result<Vec<MemoryHit>, StateError> {
        // Other agents' notes may rank among the best: ask for more, keep only ours.
        let mut wanted = limit.max(1).saturating_mul(4).saturating_add(16);
        loop {
            let hits = self.inner.search(query, wanted).await?;
            let exhausted = hits.len() < wanted;
            let mine: Vec<MemoryHit> = hits
                .into_iter()
                .filter_map(|mut h| {
                    h.note.source = self.mine(&h.note.source)?;
                    Some(h)
                })
                .take(limit)
                .collect();
            if mine.len() >= limit || exhausted || wanted >= 10_000 {
                return Ok(mine);
            }
            wanted = wanted.saturating_mul(4);
        }
    }
}
