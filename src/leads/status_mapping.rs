//! Soho CRM's `Lead_Status` values and the portal's five statuses (CONTRACT.md 5). CRM → portal
//! maps every listed value; portal → CRM uses the first CRM value listed for each status.
//! Configurable with `STATUS_MAPPING` ("CRM value=portal status", separated by `;`).

use std::collections::HashMap;

use soho_aggregates::LeadStatus;

#[derive(Debug, Clone)]
pub struct StatusMapping {
    to_portal: HashMap<String, LeadStatus>,
    to_crm: HashMap<LeadStatus, String>,
}

/// The contract's table, with the value sent to the CRM listed first for each status. The
/// contract says "the first CRM value of each row" but then names `Contacted` and `Lost Lead`,
/// which are not first in their rows; the named values win (docs/contract-notes.md).
pub const DEFAULT: &str = "Not Contacted=new;Contacted=contacted;Attempted to Contact=contacted;\
Contact in Future=contacted;Pre-Qualified=qualified;Qualified=qualified;Converted=converted;\
Lost Lead=lost;Not Qualified=lost;Junk Lead=lost";

impl Default for StatusMapping {
    fn default() -> Self {
        Self::parse(DEFAULT).expect("the default mapping is valid")
    }
}

impl StatusMapping {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut to_portal = HashMap::new();
        let mut to_crm = HashMap::new();
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (crm, portal) = pair
                .rsplit_once('=')
                .ok_or_else(|| format!("{pair:?} is not \"CRM value=status\""))?;
            let status = LeadStatus::parse(portal.trim()).ok_or_else(|| {
                format!(
                    "{:?} is not a portal status (new, contacted, qualified, converted, lost)",
                    portal.trim()
                )
            })?;
            let crm = crm.trim().to_string();
            if to_portal.insert(crm.clone(), status).is_some() {
                return Err(format!("{crm:?} is mapped twice"));
            }
            to_crm.entry(status).or_insert(crm);
        }
        if let Some(missing) = LeadStatus::ALL.iter().find(|s| !to_crm.contains_key(s)) {
            return Err(format!("no CRM value for the portal status {}", missing.as_str()));
        }
        Ok(Self { to_portal, to_crm })
    }

    pub fn to_portal(&self, crm: &str) -> Option<LeadStatus> {
        self.to_portal.get(crm).copied()
    }

    pub fn to_crm(&self, status: LeadStatus) -> &str {
        self.to_crm.get(&status).map(String::as_str).unwrap_or("Not Contacted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_contracts_table() {
        let mapping = StatusMapping::default();
        assert_eq!(mapping.to_portal("Contact in Future"), Some(LeadStatus::Contacted));
        assert_eq!(mapping.to_portal("Junk Lead"), Some(LeadStatus::Lost));
        assert_eq!(mapping.to_portal("Unheard Of"), None);
        assert_eq!(mapping.to_crm(LeadStatus::Qualified), "Pre-Qualified");
        assert_eq!(mapping.to_crm(LeadStatus::Lost), "Lost Lead");
        assert_eq!(mapping.to_crm(LeadStatus::New), "Not Contacted");
        assert_eq!(mapping.to_crm(LeadStatus::Contacted), "Contacted");
        assert_eq!(mapping.to_crm(LeadStatus::Converted), "Converted");
    }

    #[test]
    fn a_mapping_must_cover_every_status() {
        assert!(StatusMapping::parse("Open=new").unwrap_err().contains("contacted"));
        assert!(StatusMapping::parse("Open=fresh").is_err());
    }
}
