//! Budgets of an embedded host's users: the engine config's `user_budgets`
//! section, keyed by each request's `user` (OpenAI, Responses) or
//! `metadata.user_id` (Anthropic). A game can cap each player's spend:
//!
//! ```json
//! "user_budgets": {
//!   "default": {"budget": {"usd": 0.5, "period": "day"}, "limits": {"rpm": 20}},
//!   "users": {"player-42": {"budget": {"usd": 5, "period": "month"}, "models": ["demo/*"]}},
//!   "file": "spend.jsonl"
//! }
//! ```
//!
//! A request without a user, or whose user has no entry when there is no
//! `default`, is not checked. The store is local to the process (journaled
//! to `file` when given).

use super::{glob, BudgetConfig, LimitsConfig, Policy};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    default: Option<Entry>,
    #[serde(default)]
    users: BTreeMap<String, Entry>,
    file: Option<PathBuf>,
    #[serde(default)]
    fsync: bool,
    default_max_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    budget: Option<BudgetConfig>,
    limits: Option<LimitsConfig>,
    models: Option<Vec<String>>,
}

/// One user's policy: budget and limits, and the models they may call.
#[derive(Debug, Clone)]
pub struct UserPolicy {
    pub limits: Arc<Policy>,
    pub models: Option<Vec<String>>,
}

impl UserPolicy {
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|p| glob(p, model)))
    }
}

/// The `user_budgets` section, checked.
#[derive(Debug, Clone)]
pub struct UserBudgets {
    pub default: Option<UserPolicy>,
    pub users: HashMap<String, UserPolicy>,
    pub file: Option<PathBuf>,
    pub fsync: bool,
    pub default_max_tokens: u64,
}

impl UserBudgets {
    /// Parses the section; problems are `(JSON path, message)`.
    pub fn parse(v: &serde_json::Value) -> Result<UserBudgets, Vec<(String, String)>> {
        let s: Section = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                "user_budgets".into()
            } else {
                format!("user_budgets.{path}")
            };
            vec![(at, e.into_inner().to_string())]
        })?;
        let mut errs = Vec::new();
        let mut entry = |at: String, e: &Entry| {
            let limits = Policy::resolve(e.budget.as_ref(), e.limits.as_ref(), &at)
                .map_err(|v| errs.extend(v))
                .unwrap_or_default();
            UserPolicy {
                limits: Arc::new(limits),
                models: e.models.clone(),
            }
        };
        let default = s
            .default
            .as_ref()
            .map(|e| entry("user_budgets.default".into(), e));
        let users = s
            .users
            .iter()
            .map(|(u, e)| (u.clone(), entry(format!("user_budgets.users.{u}"), e)))
            .collect();
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(UserBudgets {
            default,
            users,
            file: s.file,
            fsync: s.fsync,
            default_max_tokens: s.default_max_tokens.unwrap_or(4096),
        })
    }

    /// The policy of `user`.
    pub fn policy(&self, user: &str) -> Option<&UserPolicy> {
        self.users.get(user).or(self.default.as_ref())
    }
}
