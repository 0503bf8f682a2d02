//! The runtime stores (cron, key/value, journal, outbox, leases) of [`InMemoryStore`].

use crate::InMemoryStore;
use crate::StateError;
use crate::cron::{CronJob, CronStore};
use crate::in_memory::relock;
use crate::{InboundJournal, InboundRecord, KvStore, LeaseStore, OutboundRecord, Outbox};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
struct Outgoing {
    record: OutboundRecord,
    due_at: i64,
    lease: Option<(String, i64)>,
    dead: bool,
}

#[derive(Debug, Default)]
pub(crate) struct RuntimeState {
    jobs: BTreeMap<String, CronJob>,
    kv: BTreeMap<(String, String), String>,
    inbound: Vec<(InboundRecord, Option<i64>)>,
    outbox: Vec<Outgoing>,
    leases: HashMap<String, (String, i64)>,
    next_id: i64,
}

impl RuntimeState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

#[async_trait]
impl CronStore for InMemoryStore {
    async fn put_job(&self, job: &CronJob) -> Result<(), StateError> {
        relock(&self.runtime)
            .jobs
            .insert(job.id.clone(), job.clone());
        Ok(())
    }

    async fn get_job(&self, id: &str) -> Result<Option<CronJob>, StateError> {
        Ok(relock(&self.runtime).jobs.get(id).cloned())
    }

    async fn list_jobs(&self) -> Result<Vec<CronJob>, StateError> {
        let mut jobs: Vec<CronJob> = relock(&self.runtime).jobs.values().cloned().collect();
        jobs.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(jobs)
    }

    async fn remove_job(&self, id: &str) -> Result<bool, StateError> {
        Ok(relock(&self.runtime).jobs.remove(id).is_some())
    }

    async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<CronJob>, StateError> {
        let mut due: Vec<CronJob> = relock(&self.runtime)
            .jobs
            .values()
            .filter(|j| j.enabled && j.state.next_run_at_ms.is_some_and(|t| t <= now_ms))
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.state.next_run_at_ms, &a.id).cmp(&(b.state.next_run_at_ms, &b.id)));
        due.truncate(limit);
        Ok(due)
    }

    async fn claim_run(
        &self,
        id: &str,
        scheduled_ms: i64,
        next_ms: Option<i64>,
    ) -> Result<bool, StateError> {
        let mut state = relock(&self.runtime);
        let Some(job) = state.jobs.get_mut(id) else {
            return Ok(false);
        };
        if !job.enabled || job.state.next_run_at_ms != Some(scheduled_ms) {
            return Ok(false);
        }
        job.state.next_run_at_ms = next_ms;
        job.enabled = next_ms.is_some();
        Ok(true)
    }

    async fn record_result(
        &self,
        id: &str,
        ran_at_ms: i64,
        result: Result<(), String>,
    ) -> Result<(), StateError> {
        let mut state = relock(&self.runtime);
        let Some(job) = state.jobs.get_mut(id) else {
            return Ok(());
        };
        job.state.last_run_at_ms = Some(ran_at_ms);
        job.updated_at_ms = ran_at_ms;
        match result {
            Ok(()) => {
                job.state.last_status = Some("ok".into());
                job.state.last_error = None;
            }
            Err(e) => {
                job.state.last_status = Some("error".into());
                job.state.last_error = Some(e);
            }
        }
        if job.delete_after_run && job.state.next_run_at_ms.is_none() {
            state.jobs.remove(id);
        }
        Ok(())
    }
}

#[async_trait]
impl KvStore for InMemoryStore {
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>, StateError> {
        Ok(relock(&self.runtime)
            .kv
            .get(&(namespace.to_owned(), key.to_owned()))
            .cloned())
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> Result<(), StateError> {
        relock(&self.runtime)
            .kv
            .insert((namespace.to_owned(), key.to_owned()), value.to_owned());
        Ok(())
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool, StateError> {
        Ok(relock(&self.runtime)
            .kv
            .remove(&(namespace.to_owned(), key.to_owned()))
            .is_some())
    }

    async fn kv_list(&self, namespace: &str) -> Result<Vec<(String, String)>, StateError> {
        Ok(relock(&self.runtime)
            .kv
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[async_trait]
impl InboundJournal for InMemoryStore {
    async fn journal_inbound(
        &self,
        channel: &str,
        external_id: &str,
        session_key: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StateError> {
        let mut state = relock(&self.runtime);
        if state
            .inbound
            .iter()
            .any(|(r, _)| r.channel == channel && r.external_id == external_id)
        {
            return Ok(None);
        }
        let id = state.id();
        state.inbound.push((
            InboundRecord::new(
                id,
                channel.to_owned(),
                external_id.to_owned(),
                session_key.to_owned(),
                payload.to_owned(),
                now_ms,
            ),
            None,
        ));
        Ok(Some(id))
    }

    async fn mark_processed(&self, id: i64) -> Result<(), StateError> {
        let now = crate::cron::now_ms();
        if let Some(entry) = relock(&self.runtime)
            .inbound
            .iter_mut()
            .find(|(r, _)| r.id == id)
        {
            entry.1 = Some(now);
        }
        Ok(())
    }

    async fn finish_inbound(
        &self,
        id: i64,
        channel: &str,
        chat_id: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        let mut state = relock(&self.runtime);
        if let Some(entry) = state.inbound.iter_mut().find(|(r, _)| r.id == id) {
            entry.1 = Some(now_ms);
        }
        let out = state.id();
        state.outbox.push(Outgoing {
            record: OutboundRecord::new(
                out,
                channel.to_owned(),
                chat_id.to_owned(),
                payload.to_owned(),
                0,
                None,
            ),
            due_at: now_ms,
            lease: None,
            dead: false,
        });
        Ok(out)
    }

    async fn unprocessed(&self, limit: usize) -> Result<Vec<InboundRecord>, StateError> {
        Ok(relock(&self.runtime)
            .inbound
            .iter()
            .filter(|(_, done)| done.is_none())
            .take(limit)
            .map(|(r, _)| r.clone())
            .collect())
    }

    async fn is_unprocessed(&self, id: i64) -> Result<bool, StateError> {
        Ok(relock(&self.runtime)
            .inbound
            .iter()
            .any(|(r, done)| r.id == id && done.is_none()))
    }

    async fn prune_inbound(&self, before_ms: i64) -> Result<u64, StateError> {
        let mut state = relock(&self.runtime);
        let before = state.inbound.len();
        state
            .inbound
            .retain(|(r, done)| done.is_none() || r.received_at_ms >= before_ms);
        Ok((before - state.inbound.len()) as u64)
    }
}

#[async_trait]
impl Outbox for InMemoryStore {
    async fn enqueue_outbound(
        &self,
        channel: &str,
        chat_id: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        let mut state = relock(&self.runtime);
        let id = state.id();
        state.outbox.push(Outgoing {
            record: OutboundRecord::new(
                id,
                channel.to_owned(),
                chat_id.to_owned(),
                payload.to_owned(),
                0,
                None,
            ),
            due_at: now_ms,
            lease: None,
            dead: false,
        });
        Ok(id)
    }

    async fn claim_outbound(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboundRecord>, StateError> {
        Ok(self.claim_where(owner, now_ms, lease_ms, limit, |_| true))
    }

    async fn claim_outbound_on(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
        channels: &[String],
    ) -> Result<Vec<OutboundRecord>, StateError> {
        Ok(self.claim_where(owner, now_ms, lease_ms, limit, |c| {
            channels.iter().any(|x| x == c)
        }))
    }

    async fn release_outbound_leases(&self) -> Result<u64, StateError> {
        let mut state = relock(&self.runtime);
        let mut n = 0;
        for o in state.outbox.iter_mut().filter(|o| o.lease.is_some()) {
            o.lease = None;
            n += 1;
        }
        Ok(n)
    }

    async fn ack_outbound(&self, id: i64, owner: &str) -> Result<bool, StateError> {
        let mut state = relock(&self.runtime);
        let before = state.outbox.len();
        state.outbox.retain(|o| {
            !(o.record.id == id && o.lease.as_ref().is_some_and(|(who, _)| who == owner))
        });
        Ok(state.outbox.len() < before)
    }

    async fn fail_outbound(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError> {
        let mut state = relock(&self.runtime);
        if let Some(o) = state
            .outbox
            .iter_mut()
            .find(|o| o.record.id == id && o.lease.as_ref().is_some_and(|(who, _)| who == owner))
        {
            o.lease = None;
            o.record.last_error = Some(error.to_owned());
            match retry_at_ms {
                Some(at) => o.due_at = at,
                None => o.dead = true,
            }
        }
        Ok(())
    }

    async fn dead_outbound(&self, limit: usize) -> Result<Vec<OutboundRecord>, StateError> {
        Ok(relock(&self.runtime)
            .outbox
            .iter()
            .filter(|o| o.dead)
            .take(limit)
            .map(|o| o.record.clone())
            .collect())
    }
}

#[async_trait]
impl LeaseStore for InMemoryStore {
    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StateError> {
        let mut state = relock(&self.runtime);
        let free = state
            .leases
            .get(name)
            .is_none_or(|(who, until)| who == owner || *until <= now_ms);
        if free {
            state
                .leases
                .insert(name.to_owned(), (owner.to_owned(), now_ms + ttl_ms));
        }
        Ok(free)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        let mut state = relock(&self.runtime);
        if state.leases.get(name).is_some_and(|(who, _)| who == owner) {
            state.leases.remove(name);
        }
        Ok(())
    }
}

impl InMemoryStore {
    /// Claims due messages whose channel `wanted` takes.
    fn claim_where(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<OutboundRecord> {
        let mut state = relock(&self.runtime);
        let mut out = Vec::new();
        // Only the oldest undelivered message of each chat may go (per-chat order).
        let mut seen = std::collections::HashSet::new();
        for o in state.outbox.iter_mut() {
            if out.len() == limit {
                break;
            }
            if o.dead
                || !wanted(&o.record.channel)
                || !seen.insert((o.record.channel.clone(), o.record.chat_id.clone()))
            {
                continue;
            }
            let free = o.lease.as_ref().is_none_or(|(_, until)| *until <= now_ms);
            if o.due_at <= now_ms && free {
                o.lease = Some((owner.to_owned(), now_ms + lease_ms));
                o.record.attempts += 1;
                out.push(o.record.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::conformance::runtime_suite(&InMemoryStore::new()).await;
        let store = InMemoryStore::new();
        crate::conformance::claims_are_exclusive(&store, &store).await;
        crate::conformance::scheduler_fires_once(&store, &store).await;
        crate::conformance::session_leases_serialize(&store, &store).await;
    }
}
