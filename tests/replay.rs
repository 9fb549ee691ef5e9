//! Read models rebuilt from the log equal the live ones; set-based rules hold across aggregates.

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use soho_aggregates::partner::{PartnerCommand, PartnerDetails};
use soho_aggregates::user::{Invitation, UserCommand};
use soho_aggregates::{Actor, PartnerId, Role, UserId};
use soho_portal::commands::{CommandContext, CommandError, Commands};
use soho_projections::{replay, CatchUpReader, Checkpoints};
use sqlx::PgPool;
use uuid::Uuid;

async fn portal() -> (PgPool, Commands, Vec<tokio::task::JoinHandle<()>>, common::TestDatabase) {
    let (pool, database) = common::fresh_database().await;
    let checkpoints = Checkpoints::default();
    let reader =
        Arc::new(CatchUpReader::new(pool.clone(), soho_projections::all(), checkpoints.clone()));
    reader.register().await.unwrap();
    let names = soho_portal::commands::read_models(&soho_projections::all());
    let tasks = reader.spawn();
    (pool.clone(), Commands::new(pool, checkpoints, names), tasks, database)
}

fn context() -> CommandContext {
    CommandContext::new(Actor::system())
}

async fn partner(commands: &Commands, n: usize, approved: bool) -> PartnerId {
    let id = PartnerId::new();
    let command = PartnerCommand::ApplyCrmState {
        partner_id: id,
        soho_partner_id: format!("57257670000005{n:05}"),
        details: PartnerDetails {
            name: format!("Partner {n}"),
            email: format!("owner{n}@example.com"),
            tier: n.is_multiple_of(2).then(|| "gold".to_string()),
            commission_rate: Some(n as f64),
        },
        approved,
        at: Utc::now(),
    };
    commands.execute(&commands.partners, id, command, &context()).await.unwrap();
    id
}

fn invite(partner: PartnerId, email: &str) -> (UserId, UserCommand) {
    let user_id = UserId::new();
    let command = UserCommand::Invite {
        user_id,
        partner_id: Some(partner),
        email: email.into(),
        name: None,
        role: Role::Sub,
        invitation: Invitation {
            invitation_id: soho_aggregates::InvitationId::new(),
            token_hash: format!("hash-{email}"),
            expires_at: Utc::now() + Duration::hours(72),
        },
        at: Utc::now(),
    };
    (user_id, command)
}

async fn check_all(pool: &PgPool) -> Vec<replay::Difference> {
    let mut differences = Vec::new();
    for projection in soho_projections::all() {
        differences.extend(replay::check(pool, projection.as_ref(), &|_| {}).await.unwrap());
    }
    differences
}

#[tokio::test]
async fn a_replayed_read_model_equals_the_live_one() {
    let (pool, commands, tasks, _database) = portal().await;
    let mut partners = Vec::new();
    for n in 0..6 {
        partners.push(partner(&commands, n, n % 3 != 0).await);
    }
    // Suspend one, change another's details.
    let again = PartnerCommand::ApplyCrmState {
        partner_id: partners[1],
        soho_partner_id: "5725767000000500001".into(),
        details: PartnerDetails {
            name: "Renamed".into(),
            email: "owner1@example.com".into(),
            tier: None,
            commission_rate: None,
        },
        approved: false,
        at: Utc::now(),
    };
    commands.execute(&commands.partners, partners[1], again, &context()).await.unwrap();
    for (n, partner) in partners.iter().enumerate() {
        let (user, command) = invite(*partner, &format!("user{n}@example.com"));
        commands.execute(&commands.users, user, command, &context()).await.unwrap();
        if n % 2 == 0 {
            let register = UserCommand::Register {
                token_hash: format!("hash-user{n}@example.com"),
                password_hash: "$argon2id$stand-in".into(),
                name: Some(format!("User {n}")),
                at: Utc::now(),
            };
            commands.execute(&commands.users, user, register, &context()).await.unwrap();
        }
        if n % 3 == 0 {
            let disable = UserCommand::Disable { at: Utc::now() };
            commands.execute(&commands.users, user, disable, &context()).await.unwrap();
        }
    }
    // Read your writes: the read model already shows the last command.
    let renamed: String = sqlx::query_scalar("SELECT name FROM partners WHERE partner_id = $1")
        .bind(partners[1].as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(renamed, "Renamed");
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM users ORDER BY email")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses, ["disabled", "invited", "active", "disabled", "active", "invited"]);
    for task in tasks {
        task.abort();
    }
    // A task aborted while beginning a batch can leave its pooled connection inside the
    // transaction it began (sqlx queues no rollback for a cancelled BEGIN); the next statement
    // on it would then never commit and hold its locks (CI once hung here). Carry on with fresh
    // connections.
    let options = pool.connect_options().as_ref().clone();
    pool.close().await;
    let pool = PgPool::connect_with(options).await.unwrap();

    assert_eq!(check_all(&pool).await, vec![], "the rebuild equals the live tables");

    // The check can fail: damage a live row and it is found.
    sqlx::query("UPDATE partners SET name = 'damaged' WHERE partner_id = $1")
        .bind(partners[2].as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    let found = check_all(&pool).await;
    assert_eq!(found, vec![replay::Difference { table: "partners", rows: 2 }]);

    // A rebuild repairs it.
    let partners_projection = soho_projections::partners::PartnersProjection;
    let rebuilt = replay::rebuild(&pool, &partners_projection, &|_| {}).await.unwrap();
    assert!(rebuilt.events >= 13, "{rebuilt:?}");
    assert_eq!(check_all(&pool).await, vec![]);
    let name: String = sqlx::query_scalar("SELECT name FROM partners WHERE partner_id = $1")
        .bind(partners[2].as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, "Partner 2");
}

#[tokio::test]
async fn an_email_belongs_to_one_user_whatever_its_case() {
    let (pool, commands, tasks, _database) = portal().await;
    let partner = partner(&commands, 1, true).await;
    let (first, command) = invite(partner, "Ada@Example.com");
    commands.execute(&commands.users, first, command, &context()).await.unwrap();
    let (second, command) = invite(partner, "ada@example.COM");
    let error = commands.execute(&commands.users, second, command, &context()).await.unwrap_err();
    assert!(
        matches!(&error, CommandError::Taken(rule) if rule == "user_email_unique"),
        "{error:?}"
    );
    // Refused in the append's transaction: the second user has no event, the email one owner.
    assert_eq!(events_of(&pool, &second.to_string()).await, 0);
    let owners: Vec<Uuid> = sqlx::query_scalar("SELECT user_id FROM user_emails WHERE email = $1")
        .bind("ada@example.com")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(owners, vec![first.as_uuid()]);
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn a_soho_partner_id_belongs_to_one_partner() {
    let (pool, commands, tasks, _database) = portal().await;
    partner(&commands, 7, true).await;
    let other = PartnerId::new();
    let command = PartnerCommand::ApplyCrmState {
        partner_id: other,
        soho_partner_id: "5725767000000500007".into(),
        details: PartnerDetails {
            name: "Dup".into(),
            email: "d@example.com".into(),
            tier: None,
            commission_rate: None,
        },
        approved: true,
        at: Utc::now(),
    };
    let error = commands.execute(&commands.partners, other, command, &context()).await.unwrap_err();
    assert!(
        matches!(&error, CommandError::Taken(rule) if rule == "partner_soho_id_unique"),
        "{error:?}"
    );
    assert_eq!(events_of(&pool, &other.to_string()).await, 0, "nothing of the refused partner");
    let owners: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM partner_soho_ids WHERE soho_partner_id = '5725767000000500007'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(owners, 1);
    for task in tasks {
        task.abort();
    }
}

/// How many events the log holds for aggregate `id`.
async fn events_of(pool: &PgPool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}
