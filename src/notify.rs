//! Announcing deploys, rollbacks and automatic rollbacks: a generic JSON webhook, Slack and
//! Discord. Retried with backoff; a failing webhook is reported and never fails a deploy.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;

use crate::config::{Config, WebhookUrl};
use crate::ui;

/// What happened, for the announcement.
#[derive(Clone, Debug, Serialize)]
pub struct Event<'a> {
    /// `deployed`, `rolled-back`, `auto-rolled-back` or `failed`.
    pub event: &'a str,
    pub app: &'a str,
    pub environment: &'a str,
    pub release: &'a str,
    pub hosts: Vec<String>,
    pub user: String,
    pub machine: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Event<'_> {
    /// One line for chat.
    pub fn text(&self) -> String {
        let what = match self.event {
            "deployed" => "deployed",
            "rolled-back" => "rolled back to",
            "auto-rolled-back" => "rolled back automatically from",
            _ => "failed to deploy",
        };
        let mut s = format!(
            "{} {what} {} on {} ({} host{}), by {}@{}",
            self.app,
            self.release,
            self.environment,
            self.hosts.len(),
            if self.hosts.len() == 1 { "" } else { "s" },
            self.user,
            self.machine
        );
        if let Some(reason) = &self.reason {
            s.push_str(&format!(": {reason}"));
        }
        s
    }
}

/// The body each kind of endpoint takes.
pub fn bodies(config: &Config, event: &Event<'_>) -> Vec<(WebhookUrl, serde_json::Value)> {
    let mut out = Vec::new();
    if let Some(url) = &config.notify.webhook {
        out.push((url.clone(), serde_json::to_value(event).unwrap_or_default()));
    }
    if let Some(url) = &config.notify.slack {
        out.push((url.clone(), serde_json::json!({ "text": event.text() })));
    }
    if let Some(url) = &config.notify.discord {
        out.push((url.clone(), serde_json::json!({ "content": event.text() })));
    }
    out
}

/// Send `event` to every configured endpoint, each retried up to 3 times.
pub async fn send(config: &Config, event: &Event<'_>) {
    let targets = bodies(config, event);
    if targets.is_empty() {
        return;
    }
    let client = match crate::tls::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            ui::warn(&format!(
                "could not notify anyone: {}",
                crate::probe::error_chain(&e)
            ));
            return;
        }
    };
    let sends = targets.into_iter().map(|(url, body)| {
        let client = client.clone();
        async move {
            let attempt = || async {
                let resp = client
                    .post(url.expose())
                    .json(&body)
                    .send()
                    .await
                    // The URL is a credential: never in a message.
                    .map_err(|e| Failure::of(&e.without_url()))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(Failure::Other(format!("HTTP {}", resp.status())))
                }
            };
            let policy = ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(3)
                .with_jitter();
            // A certificate this machine does not trust will not be trusted on a retry.
            let sent = attempt
                .retry(policy)
                .when(|e| !matches!(e, Failure::Untrusted(_)))
                .await;
            match sent {
                Ok(()) => {}
                Err(Failure::Untrusted(e)) => ui::warn(&format!(
                    "could not notify `{url}`: its TLS certificate is not trusted by this machine ({e}); {} (the deploy itself is not affected)",
                    untrusted_fix(&e)
                )),
                Err(Failure::Other(e)) => ui::warn(&format!("could not notify `{url}`: {e}")),
            }
        }
    });
    futures::future::join_all(sends).await;
}

/// What to do about an endpoint certificate this machine refused, from the refusal.
fn untrusted_fix(error: &str) -> &'static str {
    if error.contains("CaUsedAsEndEntity") {
        // A self-signed certificate made with `CA:TRUE` (what `openssl req -x509` makes by
        // default): curl accepts it once trusted; webpki never accepts a CA as a server's.
        "the endpoint serves a CA certificate (basicConstraints CA:TRUE, such as a self-signed one made by `openssl req -x509`) as its own, which shipit refuses even when SSL_CERT_FILE trusts it (curl accepts it): give the endpoint a certificate issued by that CA (CA:FALSE, its name in subjectAltName) and keep the CA in SSL_CERT_FILE"
    } else {
        "for a private CA, set SSL_CERT_FILE to a bundle that holds it"
    }
}

/// Why a notification could not be sent.
enum Failure {
    /// The endpoint's certificate is not trusted here (unknown issuer, expired, wrong name).
    Untrusted(String),
    Other(String),
}

impl Failure {
    fn of(e: &reqwest::Error) -> Failure {
        let text = crate::probe::error_chain(e);
        let lower = text.to_lowercase();
        if lower.contains("certificate") || lower.contains("unknownissuer") {
            Failure::Untrusted(text.rsplit(": ").next().unwrap_or(&text).to_owned())
        } else {
            Failure::Other(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_certificate_served_as_the_endpoints_own_is_named_with_the_fix() {
        let fix = untrusted_fix("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))");
        assert!(fix.contains("CA:TRUE") && fix.contains("CA:FALSE"), "{fix}");
        assert!(untrusted_fix("invalid peer certificate: UnknownIssuer").contains("SSL_CERT_FILE"));
    }

    #[test]
    fn chat_text_and_url_redaction() {
        let e = Event {
            event: "auto-rolled-back",
            app: "shop",
            environment: "production",
            release: "1.2.0+abc",
            hosts: vec!["a".into(), "b".into()],
            user: "alice".into(),
            machine: "laptop".into(),
            reason: Some("verification failed".into()),
        };
        assert_eq!(
            e.text(),
            "shop rolled back automatically from 1.2.0+abc on production (2 hosts), by alice@laptop: verification failed"
        );
        let url = WebhookUrl::new("https://user:pw@hooks.slack.com/services/T0/B0/secret?x=1");
        assert_eq!(url.to_string(), "https://hooks.slack.com/…");
        assert_eq!(format!("{url:?}"), "WebhookUrl(https://hooks.slack.com/…)");
        assert_eq!(
            serde_json::to_string(&url).unwrap(),
            "\"https://hooks.slack.com/…\""
        );
        assert_eq!(
            crate::config::redact_url("hooks.slack.com/services/T0/secret"),
            "hooks.slack.com/…"
        );
    }
}
