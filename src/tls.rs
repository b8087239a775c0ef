//! TLS for shipit's own HTTPS requests (webhooks, checks over HTTPS): rustls with the ring
//! crypto provider, and the platform's trust store (rustls-platform-verifier: on Linux the
//! system's CA bundle, `SSL_CERT_FILE` and `SSL_CERT_DIR` honoured, for private CAs).
//!
//! Owns: installing the provider once per process; every HTTP client is made after it.

/// Install the ring provider as the process default (once; later calls do nothing).
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client builder with the provider installed.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_provider();
    reqwest::Client::builder()
}
