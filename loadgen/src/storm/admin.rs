//! Staff calls: the admin API with its bearer token.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub fn new(client: reqwest::Client, base: &str, token: &str) -> Self {
        Self {
            client,
            base: base.to_owned(),
            token: token.to_owned(),
        }
    }

    /// Creates something and returns its id.
    pub async fn create(&self, path: &str, body: &Value) -> anyhow::Result<String> {
        let created = self.send(reqwest::Method::POST, path, body, 201).await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("POST {path} answered without an id: {created}"))
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::PUT, path, body, 200).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        expected: u16,
    ) -> anyhow::Result<Value> {
        let response = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(
            status.as_u16() == expected,
            "{method} {path} answered {status}: {text}"
        );
        Ok(serde_json::from_str(&text)?)
    }
}

/// The token under `admin:` in a secrets file such as `var/secrets.yaml`.
pub fn token_from_secrets(secrets: &str) -> Option<String> {
    let mut in_admin = false;
    for line in secrets.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            in_admin = trimmed == "admin:";
            continue;
        }
        if let Some(token) = trimmed.strip_prefix("token:").filter(|_| in_admin) {
            let token = token.trim().trim_matches(['"', '\'']);
            return (!token.is_empty()).then(|| token.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_admin_section_only() {
        let secrets = "# Generated once\nredis:\n  token: not-this-one\nadmin:\n  # the bearer token\n  token: \"s3cret-admin\"\nbooking:\n  token: nor-this\n";
        assert_eq!(token_from_secrets(secrets).as_deref(), Some("s3cret-admin"));
    }

    #[test]
    fn a_file_without_an_admin_token_gives_none() {
        assert_eq!(token_from_secrets("booking:\n  token: x\n"), None);
        assert_eq!(token_from_secrets("admin:\n  token:\n"), None);
        assert_eq!(token_from_secrets("admin: {}\ntoken: x\n"), None);
    }
}
