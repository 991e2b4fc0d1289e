//! Password hashing with argon2id and the password policy applied at sign-up
//! and password change.

use std::fmt;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{
    self, PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::Error;

const SALT_LEN: usize = 16;

/// Argon2id cost parameters.
///
/// The defaults are the OWASP recommendation for argon2id: 19 MiB of memory,
/// two passes, one lane.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashParams {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Number of passes over the memory.
    pub iterations: u32,
    /// Number of lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords off the async runtime, a bounded number at a
/// time.
///
/// Cloning is cheap and clones share the bound.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    max_concurrent: usize,
    // Each hash holds `memory_kib` of memory and a core for tens of
    // milliseconds; without a bound a login flood would exhaust both.
    permits: Arc<Semaphore>,
    dummy: OnceLock<String>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.inner.params)
            .field("max_concurrent", &self.inner.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Creates a hasher that runs at most `max_concurrent` hashes at once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidHashParams`] when argon2 refuses the parameters or
    /// `max_concurrent` is zero.
    pub fn new(params: HashParams, max_concurrent: usize) -> Result<Self, Error> {
        if max_concurrent == 0 {
            return Err(Error::InvalidHashParams(
                "at least one concurrent hash must be allowed".to_owned(),
            ));
        }
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| Error::InvalidHashParams(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                max_concurrent,
                permits: Arc::new(Semaphore::new(max_concurrent)),
                dummy: OnceLock::new(),
            }),
        })
    }

    /// Hashes `password` with argon2id and a random 16-byte salt, returning a
    /// PHC string.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when no salt can be drawn, [`Error::Hashing`] when
    /// argon2 fails, [`Error::Task`] when the blocking task dies.
    pub async fn hash(&self, password: &str) -> Result<String, Error> {
        let password = password.to_owned();
        self.run_blocking(move |inner| inner.hash(&password)).await
    }

    /// Checks `password` against a stored PHC string.
    ///
    /// Pass `None` when the account does not exist or has no password: a full
    /// argon2id verification still runs, against a dummy hash with the same
    /// parameters, and the answer is `false`. Response time therefore does not
    /// reveal whether an account exists. The final comparison inside argon2 is
    /// constant time.
    ///
    /// # Errors
    ///
    /// [`Error::StoredHash`] when the stored string is not a PHC string,
    /// [`Error::Hashing`] when argon2 fails, [`Error::Task`] when the blocking
    /// task dies.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, Error> {
        let password = password.to_owned();
        let phc = phc.map(str::to_owned);
        self.run_blocking(move |inner| match phc {
            Some(phc) => inner.verify(&password, &phc),
            None => {
                inner.verify_dummy(&password)?;
                Ok(false)
            }
        })
        .await
    }

    /// Whether a stored hash was made with another algorithm or other
    /// parameters than this hasher's, and should be replaced after the next
    /// successful sign-in.
    #[must_use]
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return true;
        };
        if hash.algorithm != Algorithm::Argon2id.ident()
            || hash.version != Some(Version::V0x13.into())
        {
            return true;
        }
        let Ok(stored) = Params::try_from(&hash) else {
            return true;
        };
        let current = &self.inner.params;
        stored.m_cost() != current.m_cost()
            || stored.t_cost() != current.t_cost()
            || stored.p_cost() != current.p_cost()
    }

    async fn run_blocking<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.permits).acquire_owned().await?;
        let inner = Arc::clone(&self.inner);
        // The permit moves into the task so that it is held until argon2
        // finishes, even when the caller gives up waiting: a cancelled request
        // must not free a slot while its hash still occupies the memory.
        tokio::task::spawn_blocking(move || {
            let result = work(&inner);
            drop(permit);
            result
        })
        .await?
    }
}

impl Inner {
    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash(&self, password: &str) -> Result<String, Error> {
        let mut salt = [0u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| Error::Random)?;
        let salt = SaltString::encode_b64(&salt).map_err(Error::Hashing)?;
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(Error::Hashing)
    }

    fn verify(&self, password: &str, phc: &str) -> Result<bool, Error> {
        let hash = PasswordHash::new(phc).map_err(Error::StoredHash)?;
        match self.argon2().verify_password(password.as_bytes(), &hash) {
            Ok(()) => Ok(true),
            Err(password_hash::Error::Password) => Ok(false),
            Err(e) => Err(Error::Hashing(e)),
        }
    }

    fn verify_dummy(&self, password: &str) -> Result<(), Error> {
        match self.dummy.get() {
            Some(dummy) => self.verify(password, dummy).map(drop),
            None => {
                // Making the dummy hash costs the same as verifying against
                // it, so the first unknown-account attempt is not faster.
                let dummy = self.hash(password)?;
                let _ = self.dummy.set(dummy);
                Ok(())
            }
        }
    }
}

/// Length limits for new passwords, counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    /// Fewest characters accepted.
    pub min_length: usize,
    /// Most characters accepted; bounds the work a single hash can cause.
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 128,
        }
    }
}

/// Why a new password was refused.
///
/// The messages are shown to API clients and never contain the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// Fewer characters than the policy minimum.
    #[error("the password must be at least {min} characters")]
    TooShort {
        /// The policy minimum.
        min: usize,
    },
    /// More characters than the policy maximum.
    #[error("the password must be at most {max} characters")]
    TooLong {
        /// The policy maximum.
        max: usize,
    },
    /// The password is the account's email address or its local part.
    #[error("the password must not be your email address")]
    SameAsEmail,
    /// The password is among the most commonly used passwords.
    #[error("the password is too common; choose one that is harder to guess")]
    TooCommon,
}

/// Checks a new password against `policy` and the account's email address.
///
/// # Errors
///
/// The first [`PolicyViolation`] found.
pub fn check_policy(
    password: &str,
    email: &str,
    policy: &PasswordPolicy,
) -> Result<(), PolicyViolation> {
    let length = password.chars().count();
    if length < policy.min_length {
        return Err(PolicyViolation::TooShort {
            min: policy.min_length,
        });
    }
    if length > policy.max_length {
        return Err(PolicyViolation::TooLong {
            max: policy.max_length,
        });
    }
    let candidate = password.trim().to_lowercase();
    let email = email.trim().to_lowercase();
    let local_part = email
        .rsplit_once('@')
        .map_or(email.as_str(), |(local, _)| local);
    if candidate == email || candidate == local_part {
        return Err(PolicyViolation::SameAsEmail);
    }
    if COMMON_PASSWORDS.contains(&candidate.as_str()) {
        return Err(PolicyViolation::TooCommon);
    }
    Ok(())
}

// Most of the entries are at least 12 characters long because shorter ones are
// already refused by the default minimum; the short ones matter only when a
// deployment lowers it.
const COMMON_PASSWORDS: &[&str] = &[
    "000000000000",
    "098765432109",
    "111111111111",
    "121212121212",
    "123123123123",
    "1234567890",
    "123456789012",
    "1234567890123",
    "12345678910",
    "1234qwerasdf",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "987654321098",
    "aaaaaaaaaaaa",
    "abcd12345678",
    "abcdefghijkl",
    "admin1234567",
    "administrator",
    "asdfasdfasdf",
    "asdfghjkl123",
    "baseball1234",
    "changeme1234",
    "cinema123456",
    "dragon123456",
    "football1234",
    "iloveyou1234",
    "letmein12345",
    "marquee12345",
    "master123456",
    "monkey123456",
    "movietickets",
    "p@ssw0rd1234",
    "p@ssword1234",
    "passw0rd1234",
    "password",
    "password1",
    "password123!",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "princess1234",
    "qazwsxedcrfv",
    "qwerqwerqwer",
    "qwerty123456",
    "qwertyuiop",
    "qwertyuiop12",
    "qwertyuiop123",
    "qwertyuiopas",
    "starwars1234",
    "sunshine1234",
    "superman1234",
    "tickets12345",
    "welcome12345",
    "whatever1234",
    "zaq12wsxcde3",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_params() -> HashParams {
        HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(fast_params(), 2).expect("valid params")
    }

    #[test]
    fn the_default_parameters_are_the_owasp_recommendation() {
        let params = HashParams::default();
        assert_eq!(params.memory_kib, 19_456);
        assert_eq!(params.iterations, 2);
        assert_eq!(params.parallelism, 1);
    }

    #[test]
    fn missing_config_fields_fall_back_to_the_defaults() {
        let params: HashParams =
            serde_json::from_str(r#"{"iterations": 3}"#).expect("valid config");
        assert_eq!(
            params,
            HashParams {
                iterations: 3,
                ..HashParams::default()
            }
        );
        let policy: PasswordPolicy =
            serde_json::from_str(r#"{"min_length": 14}"#).expect("valid config");
        assert_eq!(policy.min_length, 14);
        assert_eq!(policy.max_length, 128);
    }

    #[test]
    fn unusable_parameters_are_refused_at_construction() {
        let too_little_memory = HashParams {
            memory_kib: 1,
            ..fast_params()
        };
        assert!(matches!(
            PasswordHasher::new(too_little_memory, 1),
            Err(Error::InvalidHashParams(_))
        ));
        assert!(matches!(
            PasswordHasher::new(fast_params(), 0),
            Err(Error::InvalidHashParams(_))
        ));
    }

    #[tokio::test]
    async fn a_hash_is_an_argon2id_phc_string_with_a_fresh_salt() {
        let hasher = hasher();
        let first = hasher.hash("correct horse battery").await.expect("hash");
        let second = hasher.hash("correct horse battery").await.expect("hash");
        assert!(first.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{first}");
        assert_ne!(first, second);
        let salt = PasswordHash::new(&first)
            .expect("phc")
            .salt
            .expect("salt")
            .to_string();
        // 16 bytes in unpadded base64.
        assert_eq!(salt.len(), 22);
    }

    #[tokio::test]
    async fn the_right_password_verifies_and_a_wrong_one_does_not() {
        let hasher = hasher();
        let phc = hasher.hash("correct horse battery").await.expect("hash");
        assert!(hasher
            .verify("correct horse battery", Some(&phc))
            .await
            .expect("verify"));
        assert!(!hasher
            .verify("correct horse battery!", Some(&phc))
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = hasher();
        for _ in 0..2 {
            assert!(!hasher.verify("anything", None).await.expect("verify"));
        }
        assert!(hasher.inner.dummy.get().is_some());
    }

    #[tokio::test]
    async fn the_dummy_hash_uses_the_configured_parameters() {
        let hasher = hasher();
        hasher.verify("anything", None).await.expect("verify");
        let dummy = hasher.inner.dummy.get().expect("dummy hash made");
        assert!(!hasher.needs_rehash(dummy));
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error() {
        let result = hasher().verify("anything", Some("not a phc string")).await;
        assert!(matches!(result, Err(Error::StoredHash(_))));
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_needs_rehashing() {
        let old = hasher();
        let current = PasswordHasher::new(
            HashParams {
                iterations: 2,
                ..fast_params()
            },
            1,
        )
        .expect("valid params");
        let phc = old.hash("correct horse battery").await.expect("hash");
        assert!(!old.needs_rehash(&phc));
        assert!(current.needs_rehash(&phc));
        assert!(current
            .verify("correct horse battery", Some(&phc))
            .await
            .expect("verify"));
    }

    #[test]
    fn a_hash_from_another_argon2_variant_or_an_unreadable_one_needs_rehashing() {
        let hasher = hasher();
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(64, 1, 1, None).expect("params"),
        )
        .hash_password(b"pw", &SaltString::encode_b64(&[7; 16]).expect("salt"))
        .expect("hash")
        .to_string();
        assert!(hasher.needs_rehash(&argon2i));
        assert!(hasher.needs_rehash("garbage"));
    }

    #[tokio::test]
    async fn hashing_waits_for_a_free_permit() {
        let hasher = PasswordHasher::new(fast_params(), 1).expect("valid params");
        let held = Arc::clone(&hasher.inner.permits)
            .acquire_owned()
            .await
            .expect("permit");
        let waiting = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash("correct horse battery").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(held);
        waiting.await.expect("join").expect("hash");
        assert_eq!(hasher.inner.permits.available_permits(), 1);
    }

    #[test]
    fn the_debug_output_shows_the_parameters() {
        let debug = format!("{:?}", hasher());
        assert!(debug.contains("max_concurrent: 2"), "{debug}");
    }

    #[test]
    fn a_long_enough_uncommon_password_is_accepted() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            check_policy("velvet seats at midnight", "ana@example.com", &policy),
            Ok(())
        );
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        let policy = PasswordPolicy::default();
        // Eleven characters but 22 bytes.
        assert_eq!(
            check_policy("ééééééééééé", "ana@example.com", &policy),
            Err(PolicyViolation::TooShort { min: 12 })
        );
        assert_eq!(
            check_policy("éééééééééééé", "ana@example.com", &policy),
            Ok(())
        );
    }

    #[test]
    fn a_password_over_the_maximum_is_refused() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            check_policy(&"x".repeat(129), "ana@example.com", &policy),
            Err(PolicyViolation::TooLong { max: 128 })
        );
        assert_eq!(
            check_policy(&"xy".repeat(64), "ana@example.com", &policy),
            Ok(())
        );
    }

    #[test]
    fn the_email_address_or_its_local_part_is_refused() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            check_policy(" Ana.Lopez@Example.com ", "ana.lopez@example.com", &policy),
            Err(PolicyViolation::SameAsEmail)
        );
        assert_eq!(
            check_policy("ANA.LOPEZ.1987", " ana.lopez.1987@example.com", &policy),
            Err(PolicyViolation::SameAsEmail)
        );
    }

    #[test]
    fn a_common_password_is_refused_whatever_its_case() {
        let policy = PasswordPolicy::default();
        for password in ["password1234", "QwertyUiopAS", "123456789012"] {
            assert_eq!(
                check_policy(password, "ana@example.com", &policy),
                Err(PolicyViolation::TooCommon),
                "{password}"
            );
        }
    }

    #[test]
    fn short_common_passwords_are_refused_when_the_minimum_is_lowered() {
        let policy = PasswordPolicy {
            min_length: 8,
            ..PasswordPolicy::default()
        };
        assert_eq!(
            check_policy("Password", "ana@example.com", &policy),
            Err(PolicyViolation::TooCommon)
        );
    }

    #[test]
    fn the_common_password_list_is_lowercase_so_every_entry_can_match() {
        for entry in COMMON_PASSWORDS {
            assert_eq!(*entry, entry.to_lowercase());
        }
    }

    #[test]
    fn policy_messages_do_not_repeat_the_password() {
        let policy = PasswordPolicy::default();
        let email = "ana@example.com";
        for password in ["short", "password1234", "ana@example.com"] {
            let violation = check_policy(password, email, &policy).expect_err("refused");
            assert!(!violation.to_string().contains(password), "{violation}");
        }
        assert_eq!(
            PolicyViolation::TooShort { min: 12 }.to_string(),
            "the password must be at least 12 characters"
        );
    }
}
