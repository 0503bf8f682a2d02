//! Running a turn: the session held (see `hold`), then load history → build context → call the model →
//! run the tools it asks for → repeat until a final answer → persist the turn (compacting the
//! session when it grows past its budget).

use super::{Agent, AgentError, TurnEnd, TurnOptions, TurnOutcome};
use crate::events::{AgentEvent, EventSink};
use crate::tool_loop::{self, ToolLoopConfig};
use futures::StreamExt;
use picoclaw_api::{ChatMessage, FinishReason, SessionKey, Usage};
use picoclaw_providers::{ChatRequest, ChatResponse, ProviderError, StreamEvent};
use picoclaw_state::UsageRecord;
use picoclaw_tools::ToolContext;
use std::sync::Arc;
use tracing::Instrument;

impl Agent {
    /// One text message in, the final answer out (no events, no cancellation).
    pub async fn chat(&self, session: &SessionKey, text: &str) -> Result<TurnOutcome, AgentError> {
        self.turn(
            session,
            ChatMessage::user(text),
            TurnOptions::default(),
            &(),
        )
        .await
    }

    /// Runs one turn for `message` in `session`, reporting progress to `events`: holds the
    /// session first ([`Agent::hold_session`]: one turn of it at a time, across instances when
    /// the agent has session leases), then runs the turn and lets the session go.
    pub async fn turn(
        &self,
        session: &SessionKey,
        message: ChatMessage,
        options: TurnOptions,
        events: &dyn EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        let span = tracing::info_span!("turn", session = %session);
        async {
            let guard = cancellable(&options, self.hold_session(session)).await??;
            let result = self.run_turn(session, message, &options, events).await;
            guard.release().await;
            result
        }
        .instrument(span)
        .await
    }

    /// Runs one turn in the session `guard` holds (see [`Agent::hold_session`]).
    pub async fn turn_held(
        &self,
        guard: &super::SessionGuard,
        message: ChatMessage,
        options: TurnOptions,
        events: &dyn EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        let session = guard.session();
        if !guard.is_of(self) {
            return Err(AgentError::Setup(
                "turn_held: the session is held by another agent".into(),
            ));
        }
        let span = tracing::info_span!("turn", session = %session);
        self.run_turn(session, message, &options, events)
            .instrument(span)
            .await
    }

    async fn run_turn(
        &self,
        session: &SessionKey,
        message: ChatMessage,
        options: &TurnOptions,
        events: &dyn EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        let inner = &*self.inner;
        let cfg = &inner.config;
        let mut stored = inner.store.load(session, Some(cfg.history_limit)).await?;
        let budget = cfg
            .context_window
            .saturating_sub(cfg.max_tokens.unwrap_or(0) as usize);
        if cfg.compaction {
            let threshold = if cfg.compaction_threshold == 0 {
                budget / 4 * 3
            } else {
                cfg.compaction_threshold
            };
            let history: usize = stored
                .messages
                .iter()
                .map(crate::context::message_tokens)
                .sum();
            if history > threshold {
                stored = self
                    .compact(session, stored, budget / 4, budget, events)
                    .await;
            }
        }
        let memory = self.memory_section(&message).await;
        let mut system_prompt = self
            .system_prompt(stored.summary.as_deref(), memory.as_deref())
            .await;

        let message_cost = crate::context::message_tokens(&message);
        let room = budget.saturating_sub(crate::context::estimate_tokens(&system_prompt));
        if message_cost > room {
            return Err(AgentError::TooLarge {
                tokens: message_cost,
                budget: room,
            });
        }

        // Messages produced by this turn, persisted together at the end whatever happens.
        let mut turn: Vec<ChatMessage> = vec![message];
        let mut usage = Usage::default();
        let mut model_calls = 0usize;
        let mut tool_calls = 0usize;
        let mut served_by: Option<String> = None;
        let specs = Arc::clone(&inner.tool_specs);
        let mut tool_ctx = ToolContext::new(session.clone()).with_origin(options.origin);
        if let (Some(ch), Some(chat)) = (&options.channel, &options.chat_id) {
            tool_ctx = tool_ctx.with_chat(ch.clone(), chat.clone());
        }
        let loop_cfg = ToolLoopConfig {
            timeout: cfg.tool_timeout,
            max_result_bytes: cfg.max_tool_result_bytes,
        };

        let mut retried_after_compaction = false;
        let mut show_images = !options.images.is_empty();
        let result: Result<(String, TurnEnd), AgentError> = async {
            let mut iteration = 0usize;
            loop {
                let mut messages = inner.context.build_messages(
                    system_prompt.clone(),
                    &stored.messages,
                    &turn,
                    budget,
                );
                // The turn's own messages come last; the first of them is the user's.
                let with_images = show_images
                    && messages
                        .len()
                        .checked_sub(turn.len())
                        .and_then(|at| messages.get_mut(at))
                        .map(|m| m.content.extend(options.images.iter().cloned()))
                        .is_some();
                if let Err(limited) = cancellable(
                    options,
                    inner.limiter.acquire(session, crate::RateKind::Requests),
                )
                .await?
                {
                    return Ok(rate_limited_answer(&limited, &mut turn, events));
                }
                let request = ChatRequest::new(cfg.model.clone(), messages)
                    .with_tools(Arc::clone(&specs))
                    .with_max_tokens(cfg.max_tokens)
                    .with_temperature(cfg.temperature);
                model_calls += 1;
                events.event(AgentEvent::ModelCall { iteration: model_calls });
                let response = match cancellable(options, self.call_model(request, events)).await? {
                    Err(AgentError::Provider(ProviderError::ContextLength { .. }))
                        if cfg.compaction && !retried_after_compaction && !stored.messages.is_empty() =>
                    {
                        // The vendor says it does not fit (our estimate was off): summarise the
                        // whole stored history and try once more.
                        retried_after_compaction = true;
                        let current = std::mem::take(&mut stored);
                        stored = self.compact(session, current, 0, budget, events).await;
                        system_prompt =
                            self.system_prompt(stored.summary.as_deref(), memory.as_deref()).await;
                        continue;
                    }
                    Err(AgentError::Provider(ProviderError::InvalidRequest { message, .. }))
                        if with_images =>
                    {
                        tracing::warn!(%message, "the model refused the images; going on without them");
                        show_images = false;
                        continue;
                    }
                    other => other?,
                };
                if let Some(u) = &response.usage {
                    usage.add(u);
                    if let Some((ledger, label)) = &inner.usage {
                        let model = response.served_by.clone().unwrap_or_else(|| label.clone());
                        let record = UsageRecord::now(session.clone(), model, *u);
                        if let Err(e) = ledger.record(&record).await {
                            tracing::warn!(error = %e, "could not record token usage");
                        }
                    }
                }
                if response.served_by.is_some() {
                    served_by.clone_from(&response.served_by);
                }
                let assistant = response.message;
                if assistant.tool_calls.is_empty() {
                    let text = assistant.text();
                    let end = if response.finish_reason == FinishReason::Length {
                        TurnEnd::Truncated
                    } else {
                        TurnEnd::Answered
                    };
                    turn.push(assistant);
                    return Ok((text, end));
                }
                iteration += 1;
                let calls = assistant.tool_calls.clone();
                turn.push(assistant);
                // Each call takes a slot of the tool-call limit, in order; a call refused by
                // it, and every call after it, is not run (the model is told why) and the turn
                // ends with the limit's answer.
                let mut admitted = 0usize;
                let mut refused = None;
                for _ in &calls {
                    match cancellable(
                        options,
                        inner.limiter.acquire(session, crate::RateKind::ToolCalls),
                    )
                    .await
                    {
                        Ok(Ok(())) => admitted += 1,
                        Ok(Err(limited)) => {
                            refused = Some(limited);
                            break;
                        }
                        Err(e) => {
                            turn.extend(calls.iter().map(|c| ChatMessage::tool_result(
                                c.id.clone(), c.name.clone(), "Cancelled by the user before it ran.")));
                            return Err(e);
                        }
                    }
                }
                let (run, skipped) = calls.split_at(admitted);
                tool_calls += run.len();
                let results = tokio::select! {
                    results = tool_loop::run_tool_calls(&inner.tools, &tool_ctx, run, &loop_cfg, events) => results,
                    _ = cancelled(options) => {
                        // Keep the history valid: every call gets an answer.
                        turn.extend(calls.iter().map(|c| ChatMessage::tool_result(
                            c.id.clone(), c.name.clone(), "Cancelled by the user before it finished.")));
                        return Err(AgentError::Cancelled);
                    }
                };
                turn.extend(results);
                if let Some(limited) = refused {
                    turn.extend(skipped.iter().map(|c| {
                        ChatMessage::tool_result(
                            c.id.clone(),
                            c.name.clone(),
                            format!("Not run: {}", limited.message()),
                        )
                    }));
                    return Ok(rate_limited_answer(&limited, &mut turn, events));
                }
                if iteration >= cfg.max_tool_iterations {
                    let text = format!(
                        "I stopped after {} rounds of tool calls without reaching a final answer \
                         (the limit is agents.defaults.max_tool_iterations = {}). Tell me how to \
                         continue, or raise the limit.",
                        iteration, cfg.max_tool_iterations
                    );
                    events.event(AgentEvent::TextDelta(text.clone()));
                    turn.push(ChatMessage::assistant(text.clone()));
                    return Ok((text, TurnEnd::MaxIterations));
                }
            }
        }
        .await;

        let saved = inner.store.append(session, &turn).await;
        if let (Err(save_err), Err(turn_err)) = (&saved, &result) {
            tracing::error!(%save_err, %turn_err, "turn failed and could not be saved");
        }
        let (text, end) = result?;
        saved?;
        tracing::info!(
            model_calls,
            tool_calls,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            "turn finished"
        );
        Ok(TurnOutcome {
            text,
            end,
            model_calls,
            tool_calls,
            usage,
            served_by,
        })
    }

    /// Summarises all but the newest `keep_tokens` worth of `stored` into the session's summary
    /// and returns the session as it now loads. On failure the history is left as it was.
    async fn compact(
        &self,
        session: &SessionKey,
        stored: picoclaw_state::Session,
        keep_tokens: usize,
        budget: usize,
        events: &dyn EventSink,
    ) -> picoclaw_state::Session {
        let inner = &*self.inner;
        let keep = crate::compaction::keep_count(&stored.messages, keep_tokens);
        let older = &stored.messages[..stored.messages.len() - keep];
        if older.is_empty() {
            return stored;
        }
        let request = crate::compaction::summary_request(
            &inner.config.model,
            stored.summary.as_deref(),
            older,
            budget / 2,
        );
        let summary = match inner.provider.chat(request).await {
            Ok(r) if !r.message.text().trim().is_empty() => r.message.text(),
            Ok(_) => {
                tracing::warn!("compaction: the model returned an empty summary; history kept");
                return stored;
            }
            Err(e) => {
                tracing::warn!(error = %e, "compaction failed; history kept");
                return stored;
            }
        };
        if let Err(e) = inner.store.compact(session, summary.trim(), keep).await {
            tracing::warn!(error = %e, "could not store the compacted history");
            return stored;
        }
        tracing::info!(summarized = older.len(), kept = keep, "history compacted");
        events.event(AgentEvent::Compacted {
            summarized: older.len(),
            kept: keep,
        });
        match inner
            .store
            .load(session, Some(inner.config.history_limit))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the compacted session");
                stored
            }
        }
    }

    /// The memory most related to `message`, when the agent has a memory index.
    async fn memory_section(&self, message: &ChatMessage) -> Option<String> {
        let memory = self.inner.memory.as_ref()?;
        let budget = self.inner.config.memory_budget_tokens;
        if budget == 0 {
            return None;
        }
        let today = chrono::Local::now().date_naive();
        match memory.context(&message.text(), budget, today).await {
            Ok(section) => section,
            Err(e) => {
                tracing::warn!(error = %e, "long-term memory left out of this turn");
                None
            }
        }
    }

    /// The system prompt, built on the blocking pool: it reads the workspace's prompt files
    /// (AGENTS.md, SOUL.md...) and the skills' folders, which must not stall the async workers.
    async fn system_prompt(&self, summary: Option<&str>, memory: Option<&str>) -> String {
        let now = chrono::Local::now();
        let inner = Arc::clone(&self.inner);
        let summary = summary.map(str::to_owned);
        let memory = memory.map(str::to_owned);
        let render = move || {
            if inner.memory.is_some() {
                inner
                    .context
                    .system_prompt_with_memory(now, summary.as_deref(), memory.as_deref())
            } else {
                inner.context.system_prompt(now, summary.as_deref())
            }
        };
        match tokio::task::spawn_blocking(render).await {
            Ok(prompt) => prompt,
            // A panic while rendering goes on as it would have on this task.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: the turn is being dropped anyway.
            Err(_) => String::new(),
        }
    }

    async fn call_model(
        &self,
        request: ChatRequest,
        events: &dyn EventSink,
    ) -> Result<ChatResponse, AgentError> {
        let provider = &self.inner.provider;
        if !self.inner.config.stream {
            let response = provider.chat(request).await?;
            let text = response.message.text();
            if !text.is_empty() {
                events.event(AgentEvent::TextDelta(text));
            }
            return Ok(response);
        }
        let mut stream = provider.stream(request).await?;
        while let Some(item) = stream.next().await {
            match item? {
                StreamEvent::TextDelta(delta) => events.event(AgentEvent::TextDelta(delta)),
                StreamEvent::Completed(response) => return Ok(response),
                _ => {}
            }
        }
        Err(ProviderError::response(
            provider.name(),
            "the answer stream ended before the answer was complete",
        )
        .into())
    }
}

/// Ends a turn on a rate limit: the limit's message is the assistant's answer.
fn rate_limited_answer(
    limited: &crate::RateLimited,
    turn: &mut Vec<ChatMessage>,
    events: &dyn EventSink,
) -> (String, TurnEnd) {
    let text = limited.message();
    events.event(AgentEvent::TextDelta(text.clone()));
    turn.push(ChatMessage::assistant(text.clone()));
    (text, TurnEnd::RateLimited)
}

async fn cancelled(options: &TurnOptions) {
    match &options.cancel {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn cancellable<T>(
    options: &TurnOptions,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, AgentError> {
    tokio::select! {
        out = fut => Ok(out),
        _ = cancelled(options) => Err(AgentError::Cancelled),
    }
}
