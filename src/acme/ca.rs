//! Talking to the CA: the ACME protocol (RFC 8555) through instant-acme, over shipit's own
//! HTTP client (rustls with the platform's trust store, so `SSL_CERT_FILE` reaches a private
//! or test CA).
//!
//! Owns: the account (restored from what the hosts keep, or made), the order, the HTTP-01
//! challenges and the certificate, and what the CA said when it refused. Must not: touch a
//! host (a [`Responder`] does, for the challenges).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use super::plan::{self, CertFacts, StoredAccount};
use crate::config::Acme;
use crate::error::Error;
use crate::secret::Secret;

/// Puts the answer to a challenge where the CA will look for it, on every host.
pub trait Responder {
    /// Publish `key_authorization` at `/.well-known/acme-challenge/<token>` and check that
    /// every host serves it; an error names the host that does not.
    fn publish(
        &self,
        token: &str,
        key_authorization: &str,
    ) -> impl Future<Output = Result<(), Error>>;
}

/// A certificate the CA issued, and its private key.
pub struct Obtained {
    /// The chain, leaf first, PEM.
    pub chain: String,
    pub key: Secret,
    pub facts: CertFacts,
}

/// The account to order with, and what to store on the hosts when it is new or changed.
pub struct Ready {
    pub account: Account,
    pub store: Option<StoredAccount>,
}

/// instant-acme's requests, sent with reqwest.
struct Http(reqwest::Client);

impl instant_acme::HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let mut out = http::Response::new(http_body_util::Full::new(bytes));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(BytesResponse::from(out))
        })
    }
}

fn http() -> Result<Box<Http>, Error> {
    let client = crate::tls::client_builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Internal {
            context: "making the ACME client".into(),
            source: e.into(),
        })?;
    Ok(Box::new(Http(client)))
}

/// The error for a step the CA refused or could not be asked.
fn refused(acme: &Acme, step: &str, e: &instant_acme::Error) -> Error {
    let said = match e {
        instant_acme::Error::Api(problem) => problem_text(problem),
        other => crate::probe::error_chain(other),
    };
    Error::Acme {
        directory: acme.directory.clone(),
        step: step.to_owned(),
        said,
        help: None,
    }
}

/// A problem document as the CA wrote it: its type (without the URN prefix) and detail.
fn problem_text(p: &instant_acme::Problem) -> String {
    let kind = p
        .r#type
        .as_deref()
        .map(|t| t.trim_start_matches("urn:ietf:params:acme:error:"))
        .unwrap_or("error");
    let mut text = format!("{kind}: {}", p.detail.as_deref().unwrap_or("(no detail)"));
    for sub in &p.subproblems {
        text.push_str(&format!("; {sub}"));
    }
    text
}

/// Restore the hosts' account for this CA, or make one; a changed email is sent to the CA.
pub async fn account(acme: &Acme, stored: Option<StoredAccount>) -> Result<Ready, Error> {
    let contact = format!("mailto:{}", acme.email);
    if let Some(stored) = stored {
        let credentials: AccountCredentials = serde_json::from_value(stored.credentials.clone())
            .map_err(|e| Error::Acme {
                directory: acme.directory.clone(),
                step: "read the account kept on the hosts".into(),
                said: format!("it is not an account: {e}"),
                help: None,
            })?;
        let account = Account::builder_with_http(http()?)
            .from_credentials(credentials)
            .await
            .map_err(|e| refused(acme, "restore the account", &e))?;
        if stored.email == acme.email {
            return Ok(Ready {
                account,
                store: None,
            });
        }
        account
            .update_contacts(&[&contact])
            .await
            .map_err(|e| refused(acme, "update the account's email", &e))?;
        return Ok(Ready {
            account,
            store: Some(StoredAccount {
                email: acme.email.clone(),
                ..stored
            }),
        });
    }
    let (account, credentials) = Account::builder_with_http(http()?)
        .create(
            &NewAccount {
                contact: &[&contact],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await
        .map_err(|e| refused(acme, "create an account", &e))?;
    let credentials = serde_json::to_value(&credentials).map_err(|e| Error::Internal {
        context: "serializing the ACME account".into(),
        source: e.into(),
    })?;
    Ok(Ready {
        account,
        store: Some(StoredAccount {
            directory: acme.directory.clone(),
            email: acme.email.clone(),
            credentials,
        }),
    })
}

/// How long to wait for the CA to validate, and then to issue: Let's Encrypt takes seconds.
const PATIENCE: Duration = Duration::from_secs(120);

fn patience() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .backoff(1.5)
        .timeout(PATIENCE)
}

/// Order a certificate for `domain`, answer its HTTP-01 challenge through `responder`, and
/// download what the CA issues. The key is made here and never leaves this process but to the
/// hosts.
pub async fn obtain(
    acme: &Acme,
    account: &Account,
    domain: &str,
    responder: &impl Responder,
) -> Result<Obtained, Error> {
    let identifiers = [Identifier::Dns(domain.to_owned())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| refused(acme, "create an order", &e))?;
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| refused(acme, "read the authorization", &e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                // Validated recently for this account: nothing to answer.
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(Error::Acme {
                        directory: acme.directory.clone(),
                        step: "authorize".into(),
                        said: format!("the authorization for `{domain}` is {other:?}"),
                        help: None,
                    });
                }
            }
            let mut challenge =
                authz
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| Error::Acme {
                        directory: acme.directory.clone(),
                        step: "authorize".into(),
                        said: format!("it offers no http-01 challenge for `{domain}`"),
                        help: Some("shipit answers http-01 only: use a CA that offers it".into()),
                    })?;
            if !plan::is_token(&challenge.token) {
                return Err(Error::Acme {
                    directory: acme.directory.clone(),
                    step: "authorize".into(),
                    said: format!("its challenge token {:?} is not base64url", challenge.token),
                    help: None,
                });
            }
            let token = challenge.token.clone();
            let key_authorization = challenge.key_authorization();
            responder
                .publish(&token, key_authorization.as_str())
                .await?;
            challenge
                .set_ready()
                .await
                .map_err(|e| refused(acme, "start the validation", &e))?;
        }
    }
    match order.poll_ready(&patience()).await {
        Ok(OrderStatus::Ready) => {}
        // Refused: the order is invalid, or carries the CA's problem.
        Ok(_) | Err(instant_acme::Error::Api(_)) => {
            return Err(validation_failed(acme, domain, &mut order).await);
        }
        Err(instant_acme::Error::Timeout(_)) => {
            return Err(Error::Acme {
                directory: acme.directory.clone(),
                step: "validate".into(),
                said: format!(
                    "it had not validated `{domain}` after {}s",
                    PATIENCE.as_secs()
                ),
                help: None,
            });
        }
        Err(e) => return Err(refused(acme, "validate", &e)),
    }
    let key = order
        .finalize()
        .await
        .map_err(|e| refused(acme, "finalize the order", &e))?;
    let chain = order
        .poll_certificate(&patience())
        .await
        .map_err(|e| refused(acme, "issue the certificate", &e))?;
    let facts = CertFacts::from_pem(chain.as_bytes()).map_err(|why| Error::Acme {
        directory: acme.directory.clone(),
        step: "issue the certificate".into(),
        said: format!("what it sent is not a certificate chain: {why}"),
        help: None,
    })?;
    Ok(Obtained {
        chain,
        key: Secret::new(key),
        facts,
    })
}

/// What the CA said about each authorization it refused (its http-01 challenge's error).
async fn validation_failed(acme: &Acme, domain: &str, order: &mut instant_acme::Order) -> Error {
    let mut said = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        if state.status == AuthorizationStatus::Valid {
            continue;
        }
        let name = state.identifier().to_string();
        for c in &state.challenges {
            if let Some(p) = &c.error {
                said.push(format!("for `{name}`: {}", problem_text(p)));
            }
        }
    }
    if said.is_empty() {
        said.push(match &order.state().error {
            Some(p) => problem_text(p),
            None => format!("the order for `{domain}` is invalid (no reason given)"),
        });
    }
    Error::Acme {
        directory: acme.directory.clone(),
        step: "validate".into(),
        said: said.join("; "),
        help: Some(format!(
            "the CA fetches http://{domain}/.well-known/acme-challenge/<token>: `{domain}` must resolve to your hosts (or to the load balancer in front of them) and port 80 must reach nginx"
        )),
    }
}
