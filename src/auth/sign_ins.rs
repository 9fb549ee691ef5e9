//! When each user last logged in (with a password, or by accepting an invitation): shown to the
//! partner's admin on the Team page, so a sub-account nobody uses can be spotted.

use soho_aggregates::UserId;
use sqlx::PgPool;

#[tracing::instrument(skip(pool), err)]
pub async fn record(pool: &PgPool, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_sign_ins (user_id, signed_in_at) VALUES ($1, now()) \
         ON CONFLICT (user_id) DO UPDATE SET signed_in_at = EXCLUDED.signed_in_at",
    )
    .bind(user.as_uuid())
    .execute(pool)
    .await?;
    Ok(())
}
