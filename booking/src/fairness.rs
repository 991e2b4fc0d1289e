//! Keeping one buyer from holding a show without paying. A guest's hold
//! counts against more than the address typed: the address in canonical
//! form (so `A.da+1@gmail.com` is `ada@gmail.com`), the client's network
//! address (a whole IPv6 /64, which one subscriber gets), and the device
//! id this service handed out. Each is a key with its own cap of seats a
//! showtime may have held unpaid by it; the keys are hashed with a server
//! secret, so no address is stored.

use std::net::IpAddr;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use marquee_ratelimit::Claim;

use crate::settings::FairnessSettings;

const DEVICE_PREFIX: &str = "dv1";

/// Who is asking, as the edge saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub address: Option<IpAddr>,
    /// A device id this service handed out, already verified.
    pub device: Option<String>,
}

/// Providers that deliver `local+tag@domain` to `local@domain`, and those
/// that also ignore dots in the local part.
const PLUS_TAGS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "fastmail.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
];
const DOTLESS: &[&str] = &["gmail.com", "googlemail.com"];

/// The mailbox an address delivers to, as far as its provider is known:
/// lower case, `googlemail.com` as `gmail.com`, without dots where the
/// provider ignores them and without `+tags` where it delivers them to the
/// same mailbox (`-tags` for Yahoo).
pub fn canonical_email(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    let domain = if domain == "googlemail.com" {
        "gmail.com"
    } else {
        domain
    };
    let mut local = local.to_owned();
    let tag_separator = if domain.starts_with("yahoo.") {
        Some('-')
    } else if PLUS_TAGS.contains(&domain) {
        Some('+')
    } else {
        None
    };
    if let Some(separator) = tag_separator {
        if let Some((base, _)) = local.split_once(separator) {
            local = base.to_owned();
        }
    }
    if DOTLESS.contains(&domain) {
        local.retain(|c| c != '.');
    }
    format!("{local}@{domain}")
}

/// The part of an address that names one client: an IPv4 address, or the
/// /64 an IPv6 subscriber is given (IPv4-mapped addresses count as IPv4).
pub fn address_scope(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

/// Hands out device ids and turns identities into the keys holds count
/// against.
pub struct ClientKeys {
    key: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys").finish_non_exhaustive()
    }
}

impl ClientKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            random: SystemRandom::new(),
        }
    }

    fn tag(&self, context: &str, value: &[u8]) -> Vec<u8> {
        let mut message = context.as_bytes().to_vec();
        message.push(0);
        message.extend_from_slice(value);
        hmac::sign(&self.key, &message).as_ref().to_vec()
    }

    /// A new device id: random, and signed so that only ids this service
    /// handed out are accepted.
    pub fn new_device(&self) -> Option<String> {
        let mut bytes = [0u8; 16];
        self.random.fill(&mut bytes).ok()?;
        let id = URL_SAFE_NO_PAD.encode(bytes);
        let tag = URL_SAFE_NO_PAD.encode(&self.tag("device", id.as_bytes())[..16]);
        Some(format!("{DEVICE_PREFIX}.{id}.{tag}"))
    }

    /// Whether this service handed out `device`.
    pub fn is_device(&self, device: &str) -> bool {
        let mut parts = device.split('.');
        let (Some(DEVICE_PREFIX), Some(id), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let expected = &self.tag("device", id.as_bytes())[..16];
        tag.len() == expected.len()
            && tag
                .iter()
                .zip(expected)
                .fold(0u8, |difference, (a, b)| difference | (a ^ b))
                == 0
    }

    /// A pass for a place in a waiting room's line: who holds it, for which
    /// showtime, until when, signed so that it cannot be made up or moved
    /// to another holder.
    pub fn pass(
        &self,
        place: uuid::Uuid,
        showtime: uuid::Uuid,
        holder: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let body = format!("{}.{}", place.simple(), expires_at.timestamp());
        let tag = URL_SAFE_NO_PAD.encode(
            &self.tag(
                "pass",
                format!("{body}.{}.{holder}", showtime.simple()).as_bytes(),
            )[..16],
        );
        format!("qp1.{body}.{tag}")
    }

    /// The place a pass was given for, if it is genuine, for this showtime
    /// and holder, and not past its time.
    pub fn open_pass(
        &self,
        pass: &str,
        showtime: uuid::Uuid,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<uuid::Uuid> {
        let mut parts = pass.split('.');
        let (Some("qp1"), Some(place), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expected = &self.tag(
            "pass",
            format!("{place}.{expires}.{}.{holder}", showtime.simple()).as_bytes(),
        )[..16];
        let given = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let same = given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |difference, (a, b)| difference | (a ^ b))
                == 0;
        let expires: i64 = expires.parse().ok()?;
        (same && expires > now.timestamp())
            .then(|| uuid::Uuid::try_parse(place).ok())
            .flatten()
    }

    /// The key a device's places in line and holds are kept under.
    pub fn device_holder(&self, device: &str) -> String {
        self.key("device", device)
    }

    /// The key a network address's places in line are counted under.
    pub fn address_holder(&self, address: IpAddr) -> String {
        self.key("address", &address_scope(address).to_string())
    }

    fn key(&self, kind: &str, identity: &str) -> String {
        let tag = self.tag(kind, identity.as_bytes());
        let hex: String = tag[..12].iter().map(|byte| format!("{byte:02x}")).collect();
        format!("{kind}:{hex}")
    }

    /// The keys a hold counts against besides its customer: a guest's
    /// address in canonical form, the network address and the device.
    pub fn claimants(&self, guest_email: Option<&str>, client: &Client) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(email) = guest_email {
            keys.push(self.key("email", &canonical_email(email)));
        }
        if let Some(address) = client.address {
            keys.push(self.address_holder(address));
        }
        if let Some(device) = &client.device {
            keys.push(self.device_holder(device));
        }
        keys
    }
}

/// What a hold of `seats` seats of `showtime` takes from each of its keys'
/// limits: unpaid seats of the showtime per key, and live holds across
/// every showtime per network address and device.
pub fn claims(
    claimants: &[String],
    showtime: uuid::Uuid,
    seats: usize,
    per_customer: usize,
    fairness: &FairnessSettings,
) -> Vec<Claim> {
    let seats = u64::try_from(seats).unwrap_or(u64::MAX);
    let cap = |limit: usize| u64::try_from(limit).unwrap_or(u64::MAX);
    let mut claims = Vec::new();
    for key in claimants {
        let (unpaid, live) = match key.split(':').next() {
            Some("address") => (
                fairness.max_unpaid_seats_per_address,
                Some(fairness.max_live_holds_per_address),
            ),
            Some("device") => (
                fairness.max_unpaid_seats_per_device,
                Some(fairness.max_live_holds_per_device),
            ),
            _ => (per_customer, None),
        };
        claims.push(Claim {
            key: format!("seats:{showtime}:{key}"),
            weight: seats,
            cap: cap(unpaid),
        });
        if let Some(live) = live {
            claims.push(Claim {
                key: format!("live:{key}"),
                weight: 1,
                cap: cap(live),
            });
        }
    }
    claims
}

/// What a full claim limits, for the answer: the kind of key (`email`,
/// `address` or `device`) and whether it counts live holds rather than
/// unpaid seats.
pub fn limit_of(claim: &Claim) -> (&str, bool) {
    let live = claim.key.starts_with("live:");
    let kind = claim.key.rsplit(':').nth(1).unwrap_or("client");
    (kind, live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_reach_one_mailbox_are_one_customer() {
        for (typed, canonical) in [
            ("Ada.Lovelace+tickets@GMail.com", "adalovelace@gmail.com"),
            ("a.d.a@googlemail.com", "ada@gmail.com"),
            ("ada+1@outlook.com", "ada@outlook.com"),
            ("ada.lovelace@outlook.com", "ada.lovelace@outlook.com"),
            ("ada-spam@yahoo.com", "ada@yahoo.com"),
            ("ada+x@example.com", "ada+x@example.com"),
            ("  Ada@Example.COM ", "ada@example.com"),
            ("not an address", "not an address"),
        ] {
            assert_eq!(canonical_email(typed), canonical, "{typed}");
        }
    }

    #[test]
    fn an_ipv6_subscriber_is_one_client_and_a_mapped_ipv4_address_is_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("address");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(address_scope(a), address_scope(b));
        assert_ne!(address_scope(a), address_scope(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("address");
        assert_eq!(
            address_scope(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("address")
        );
    }

    #[test]
    fn only_device_ids_this_service_handed_out_are_accepted() {
        let keys = ClientKeys::new(b"a server secret of some length");
        let device = keys.new_device().expect("random");
        assert!(keys.is_device(&device));
        assert!(!ClientKeys::new(b"another secret").is_device(&device));
        let forged = format!("{}x", &device[..device.len() - 1]);
        assert!(!keys.is_device(&forged));
        for bad in ["", "dv1", "dv1..", "dv1.a.b.c", "dv2.a.b"] {
            assert!(!keys.is_device(bad), "{bad}");
        }
    }

    #[test]
    fn a_pass_opens_only_for_its_showtime_and_holder_and_until_its_time() {
        let keys = ClientKeys::new(b"a server secret of some length");
        let (place, showtime) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let now = chrono::Utc::now();
        let pass = keys.pass(
            place,
            showtime,
            "user:1",
            now + chrono::Duration::minutes(2),
        );
        assert_eq!(keys.open_pass(&pass, showtime, "user:1", now), Some(place));
        assert_eq!(keys.open_pass(&pass, showtime, "user:2", now), None);
        assert_eq!(
            keys.open_pass(&pass, uuid::Uuid::new_v4(), "user:1", now),
            None
        );
        assert_eq!(
            keys.open_pass(
                &pass,
                showtime,
                "user:1",
                now + chrono::Duration::minutes(3)
            ),
            None
        );
        let later = keys.pass(place, showtime, "user:1", now + chrono::Duration::hours(5));
        let forged = format!(
            "{}.{}",
            later.rsplit_once('.').map_or("", |(body, _)| body),
            pass.rsplit_once('.').map_or("", |(_, tag)| tag)
        );
        assert_eq!(keys.open_pass(&forged, showtime, "user:1", now), None);
        assert_eq!(keys.open_pass("qp1.x", showtime, "user:1", now), None);
    }

    #[test]
    fn a_guest_counts_against_its_canonical_address_network_and_device() {
        let keys = ClientKeys::new(b"a server secret of some length");
        let fairness = FairnessSettings::default();
        let client = Client {
            address: Some("192.0.2.7".parse().expect("address")),
            device: Some("dv1.x.y".to_owned()),
        };
        let first = keys.claimants(Some("Ada+1@gmail.com"), &client);
        let second = keys.claimants(Some("a.da+2@gmail.com"), &client);
        assert_eq!(first, second);
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|key| !key.contains("192.0.2.7")));
        assert_eq!(keys.claimants(None, &client).len(), 2);

        let showtime = uuid::Uuid::new_v4();
        let claims = claims(&first, showtime, 3, 10, &fairness);
        let caps: Vec<(&str, bool, u64, u64)> = claims
            .iter()
            .map(|claim| {
                let (kind, live) = limit_of(claim);
                (kind, live, claim.weight, claim.cap)
            })
            .collect();
        assert_eq!(
            caps,
            [
                ("email", false, 3, 10),
                ("address", false, 3, 40),
                ("address", true, 1, 12),
                ("device", false, 3, 10),
                ("device", true, 1, 6),
            ]
        );
        assert!(claims[0].key.contains(&showtime.to_string()));
        assert!(!claims[2].key.contains(&showtime.to_string()));
    }
}
