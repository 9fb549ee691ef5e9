//! The Soho CRM simulator: `serve` runs it; the other commands are the operator's, sent to a
//! running simulator's operator API.

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use soho_crm_sim::SimConfig;

#[derive(Parser)]
#[command(name = "soho-crm-sim", about = "A Soho CRM simulator for the Soho Partner Portal")]
struct Cli {
    /// The running simulator, for the operator commands.
    #[arg(long, env = "SIM_URL", default_value = "http://127.0.0.1:9090", global = true)]
    sim_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulator.
    Serve {
        #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
        /// The portal that receives the webhooks.
        #[arg(long, env = "PORTAL_URL", default_value = "http://127.0.0.1:8080")]
        portal_url: String,
        /// The portal's SOHO_WEBHOOK_SECRET.
        #[arg(long, env = "SOHO_WEBHOOK_SECRET")]
        webhook_secret: String,
        #[arg(long, default_value_t = 3600)]
        token_ttl_seconds: u64,
        #[arg(long, default_value_t = 1.0)]
        retry_scale: f64,
        /// Seeds the fault dice (random when not given; printed at start).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Create or change a partner (sends partner.created/updated).
    Partner {
        #[command(subcommand)]
        command: PartnerCommand,
    },
    /// Change a lead's Lead_Status (sends lead.status_changed).
    LeadStatus { soho_lead_id: String, status: String },
    /// Set the faults, as JSON, e.g. '{"errorRate": 0.3, "latencyMs": 200}'.
    Faults { json: String },
    /// Print the simulator's state.
    State,
}

#[derive(Subcommand)]
enum PartnerCommand {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        approved: bool,
    },
    Approve {
        soho_partner_id: String,
    },
    Suspend {
        soho_partner_id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    soho_crm_sim::install_crypto_provider();
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let http = reqwest::Client::new();
    let call = |path: String, body: Value| {
        let request = http.post(format!("{}{path}", cli.sim_url)).json(&body);
        async move { anyhow::Ok(request.send().await?.json::<Value>().await?) }
    };
    let answer = match cli.command {
        Command::Serve {
            listen,
            portal_url,
            webhook_secret,
            token_ttl_seconds,
            retry_scale,
            seed,
        } => {
            let seed = seed.unwrap_or_else(rand::random);
            println!("fault dice seed: {seed}");
            let config =
                SimConfig { portal_url, webhook_secret, token_ttl_seconds, retry_scale, seed };
            let (address, _, task) = soho_crm_sim::start(config, listen).await?;
            println!("Soho CRM simulator is running: open http://{address}/sim");
            task.await?;
            return Ok(());
        }
        Command::Partner { command: PartnerCommand::Create { name, email, approved } } => {
            call(
                "/sim/partners".into(),
                json!({"name": name, "email": email, "approved": approved}),
            )
            .await?
        }
        Command::Partner { command: PartnerCommand::Approve { soho_partner_id } } => {
            call(format!("/sim/partners/{soho_partner_id}/approve"), json!({})).await?
        }
        Command::Partner { command: PartnerCommand::Suspend { soho_partner_id } } => {
            call(format!("/sim/partners/{soho_partner_id}/suspend"), json!({})).await?
        }
        Command::LeadStatus { soho_lead_id, status } => {
            call(format!("/sim/leads/{soho_lead_id}/status"), json!({"status": status})).await?
        }
        Command::Faults { json } => {
            call("/sim/faults".into(), serde_json::from_str(&json)?).await?
        }
        Command::State => {
            http.get(format!("{}/sim/state", cli.sim_url)).send().await?.json().await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
