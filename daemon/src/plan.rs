//! `moat plan`: the nftables ruleset and the classifier's device table a
//! config compiles to, as text for people.

use moat_policy::Config;

pub fn render(cfg: &Config) -> String {
    let mut out = moat_policy::nft::ruleset(cfg);
    out.push_str("\n# classifier device table (DEVICES map)\n");
    for d in &cfg.devices {
        let blocked = cfg.policy_of(d).blocked_names().join(",");
        out.push_str(&format!("# id {:>5}  {}  {:<20} policy={} block=[{}]\n", d.id, d.mac, d.name, d.policy, blocked));
    }
    let unknown = cfg.unknown_policy();
    out.push_str(&format!(
        "# unknown devices: block=[{}] quarantine={}\n",
        unknown.blocked_names().join(","),
        unknown.quarantine
    ));
    out
}
