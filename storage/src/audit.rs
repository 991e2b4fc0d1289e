//! The audit log: security-relevant and administrative actions, on the
//! catalog node, append-only.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::rejected;
use crate::{Error, Storage};

/// One action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub actor_id: Option<Uuid>,
    pub actor_role: String,
    pub action: String,
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: serde_json::Value,
}

/// A recorded action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub entry: AuditEntry,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<Uuid>,
    /// Entries by or about this user: as the actor or as the target.
    pub subject: Option<Uuid>,
    pub action: Option<String>,
    /// Entries older than this id (the previous page's last).
    pub before: Option<Uuid>,
    pub limit: i64,
}

impl Storage {
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), Error> {
        let catalog = self.cluster().catalog();
        catalog
            .get()
            .await?
            .execute(
                "insert into audit_log (id, actor_id, actor_role, action, target, outcome, ip, \
                     request_id, detail) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &Uuid::now_v7(),
                    &entry.actor_id,
                    &entry.actor_role,
                    &entry.action,
                    &entry.target,
                    &entry.outcome,
                    &entry.ip,
                    &entry.request_id,
                    &entry.detail,
                ],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(())
    }

    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, Error> {
        let catalog = self.cluster().catalog();
        let rows = catalog
            .get()
            .await?
            .query(
                "select id, at, actor_id, actor_role, action, target, outcome, ip, request_id, detail \
                 from audit_log where ($1::uuid is null or actor_id = $1) \
                 and ($2::text is null or action = $2) and ($3::uuid is null or id < $3) \
                 and ($5::uuid is null or actor_id = $5 or target = $5::text) \
                 order by id desc limit $4",
                &[
                    &filter.actor_id,
                    &filter.action,
                    &filter.before,
                    &filter.limit,
                    &filter.subject,
                ],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(rows
            .iter()
            .map(|row| {
                let outcome: String = row.get(6);
                AuditRecord {
                    id: row.get(0),
                    at: row.get(1),
                    entry: AuditEntry {
                        actor_id: row.get(2),
                        actor_role: row.get(3),
                        action: row.get(4),
                        target: row.get(5),
                        outcome: match outcome.as_str() {
                            "success" => "success",
                            "denied" => "denied",
                            _ => "failure",
                        },
                        ip: row.get(7),
                        request_id: row.get(8),
                        detail: row.get(9),
                    },
                }
            })
            .collect())
    }
}
