//! The portal's core context: what commands, queries and background work all need. The HTTP
//! layer, the command line and the tests reach the portal through this.

use std::sync::Arc;

use soho_projections::Checkpoints;
use sqlx::PgPool;

use crate::auth::rate_limit::{AuthLimits, Limiter};
use crate::auth::Keys;
use crate::commands::Commands;
use crate::config::Settings;

pub struct Portal {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub keys: Keys,
    pub commands: Commands,
    pub checkpoints: Checkpoints,
    pub auth_limits: AuthLimits,
    pub public_form_limits: Limiter,
    /// Invitations per sending admin and per recipient (both per hour).
    pub invite_limits: (Limiter, Limiter),
    /// Lead submissions per user and per partner (both per minute).
    pub lead_limits: (Limiter, Limiter),
    /// Requests per API key (per minute).
    pub api_key_limits: Limiter,
    pub metrics: crate::metrics::Metrics,
    /// Users' standing, read at most a second ago.
    pub standings: crate::auth::standing::Standings,
    /// Every lead command goes through this server's writer (group commit).
    pub writer: crate::leads::writer::LeadWriter,
    /// Live updates for this server's WebSockets.
    pub live: crate::live::LiveHub,
    /// The in-process Soho CRM simulator's operator page, in dev setups.
    pub simulator_url: Option<String>,
}

impl Portal {
    pub fn new(pool: PgPool, settings: Settings, keys: Keys, checkpoints: Checkpoints) -> Self {
        let read_models = crate::commands::read_models(&soho_projections::followed());
        let (writer, writer_task) = crate::leads::writer::LeadWriter::new();
        // It lives as long as a `LeadWriter` does: this portal's.
        writer_task.spawn(pool.clone());
        let commands = Commands::new(pool.clone(), checkpoints.clone(), read_models);
        let auth_limits = AuthLimits::new(
            settings.auth_limit_per_address,
            settings.auth_limit_per_email,
            settings.auth_failure_limit_per_email,
        );
        let public_form_limits = Limiter::per_minute(settings.public_form_limit_per_address);
        let invite_limits = (
            Limiter::per_hour(settings.invite_limit_per_admin),
            Limiter::per_hour(settings.invite_limit_per_recipient),
        );
        let lead_limits = (
            Limiter::per_minute(settings.lead_limit_per_user),
            Limiter::per_minute(settings.lead_limit_per_partner),
        );
        let api_key_limits = Limiter::per_minute(settings.api_key_limit);
        Self {
            pool,
            settings: Arc::new(settings),
            keys,
            commands,
            checkpoints,
            auth_limits,
            public_form_limits,
            invite_limits,
            lead_limits,
            api_key_limits,
            metrics: Default::default(),
            writer,
            standings: Default::default(),
            live: Default::default(),
            simulator_url: None,
        }
    }

    /// The link an invitation email carries.
    pub fn registration_link(&self, invitation_id: soho_aggregates::InvitationId) -> String {
        format!(
            "{}/register?token={}",
            self.settings.public_base_url,
            self.keys.invitation_token(invitation_id)
        )
    }

    /// The link a password reset email carries.
    pub fn password_reset_link(&self, reset_id: soho_aggregates::InvitationId) -> String {
        format!(
            "{}/reset-password?token={}",
            self.settings.public_base_url,
            self.keys.password_reset_token(reset_id)
        )
    }
}
