//! The `partners` read model: one row per partner with its details and life-cycle status.

use soho_aggregates::aggregate_type;
use soho_aggregates::partner::{PartnerDetails, PartnerEvent};
use soho_aggregates::PartnerStatus;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError, StoredEvent};

pub struct PartnersProjection;

#[async_trait::async_trait]
impl Projection for PartnersProjection {
    fn name(&self) -> &'static str {
        "partners"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["partners"]
    }

    fn follows(&self) -> &'static [&'static str] {
        &[aggregate_type::PARTNER]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for stored in events.iter().filter(|e| e.aggregate_type == aggregate_type::PARTNER) {
            let id: Uuid = stored.aggregate_uuid()?;
            match stored.decode::<PartnerEvent>()? {
                PartnerEvent::PartnerRegistered { soho_partner_id, details, at, .. } => {
                    sqlx::query(
                        "INSERT INTO partners (partner_id, soho_partner_id, name, email, tier, \
                         commission_rate, status, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
                    )
                    .bind(id)
                    .bind(soho_partner_id)
                    .bind(details.name)
                    .bind(details.email)
                    .bind(details.tier)
                    .bind(details.commission_rate)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                PartnerEvent::PartnerDetailsChanged { details, at } => {
                    update_details(tx, id, details, at).await?;
                }
                PartnerEvent::PartnerApproved { at } | PartnerEvent::PartnerReinstated { at } => {
                    set_status(tx, id, PartnerStatus::Approved, at).await?;
                }
                PartnerEvent::PartnerSuspended { at } => {
                    set_status(tx, id, PartnerStatus::Suspended, at).await?;
                }
            }
        }
        Ok(())
    }
}

async fn update_details(
    tx: &mut PgConnection,
    id: Uuid,
    details: PartnerDetails,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE partners SET name = $2, email = $3, tier = $4, commission_rate = $5, updated_at = $6 \
         WHERE partner_id = $1",
    )
    .bind(id)
    .bind(details.name)
    .bind(details.email)
    .bind(details.tier)
    .bind(details.commission_rate)
    .bind(at)
    .execute(tx)
    .await?;
    Ok(())
}

async fn set_status(
    tx: &mut PgConnection,
    id: Uuid,
    status: PartnerStatus,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE partners SET status = $2, updated_at = $3 WHERE partner_id = $1")
        .bind(id)
        .bind(status.as_str())
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}
