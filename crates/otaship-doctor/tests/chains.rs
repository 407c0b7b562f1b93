//! The TLS judgement on certificate chains made for each failure iOS knows: every finding code
//! is produced by a chain built to cause it, and a healthy chain produces none.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::sync::Arc;

use otaship_doctor::tls::judge_chain;
use otaship_doctor::{Options, Severity};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, ServerName};
use time::{Duration, OffsetDateTime};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn intermediate(name: &str, parent: &CertifiedIssuer<'static, KeyPair>) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::signed_by(params, KeyPair::generate().expect("key"), parent).expect("intermediate")
}

/// A leaf for `names`, valid from `from` for `days`, with serverAuth unless told otherwise.
fn leaf(
    names: &[&str],
    issuer: &CertifiedIssuer<'static, KeyPair>,
    from: OffsetDateTime,
    days: i64,
    server_auth: bool,
) -> CertificateDer<'static> {
    let mut params =
        CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).expect("params");
    params.not_before = from;
    params.not_after = from + Duration::days(days);
    if server_auth {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    params.signed_by(&KeyPair::generate().expect("key"), issuer).expect("leaf").der().clone()
}

fn trusting(root: &CertifiedIssuer<'static, KeyPair>) -> Options {
    Options { extra_roots: vec![root.der().clone()], ..Options::default() }
}

fn judge(chain: &[CertificateDer<'static>], host: &str, options: &Options) -> Vec<&'static str> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let name = ServerName::try_from(host.to_owned()).expect("name");
    judge_chain(chain, &name, options, &provider)
        .into_iter()
        .filter(|finding| finding.severity != Severity::Info)
        .map(|finding| finding.code)
        .collect()
}

fn recently() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::days(1)
}

#[test]
fn a_healthy_private_chain_has_no_finding() {
    let root = ca("Root");
    let chain = [leaf(&["ota.example.test"], &root, recently(), 397, true)];
    assert_eq!(judge(&chain, "ota.example.test", &trusting(&root)), Vec::<&str>::new());
    let middle = intermediate("Intermediate", &root);
    let chain = [leaf(&["ota.example.test"], &middle, recently(), 397, true), middle.der().clone()];
    assert_eq!(judge(&chain, "ota.example.test", &trusting(&root)), Vec::<&str>::new());
}

#[test]
fn each_broken_chain_names_its_cause() {
    let root = ca("Root");
    let options = trusting(&root);
    let wrong_name = [leaf(&["other.example.test"], &root, recently(), 397, true)];
    assert_eq!(judge(&wrong_name, "ota.example.test", &options), ["tls-name-mismatch"]);

    let expired = [leaf(&["ota.example.test"], &root, OffsetDateTime::now_utc() - Duration::days(400), 397, true)];
    assert_eq!(judge(&expired, "ota.example.test", &options), ["tls-expired"]);

    let soon = [leaf(&["ota.example.test"], &root, OffsetDateTime::now_utc() - Duration::days(390), 397, true)];
    assert_eq!(judge(&soon, "ota.example.test", &options), ["tls-expires-soon"]);

    let too_long = [leaf(&["ota.example.test"], &root, recently(), 900, true)];
    assert_eq!(judge(&too_long, "ota.example.test", &options), ["tls-validity-too-long"]);

    let no_eku = [leaf(&["ota.example.test"], &root, recently(), 397, false)];
    assert_eq!(judge(&no_eku, "ota.example.test", &options), ["tls-no-server-auth"]);

    let middle = intermediate("Intermediate", &root);
    let leaf_only = [leaf(&["ota.example.test"], &middle, recently(), 397, true)];
    assert_eq!(judge(&leaf_only, "ota.example.test", &options), ["tls-missing-intermediate"]);

    let stranger = ca("Unknown root");
    let untrusted = [leaf(&["ota.example.test"], &stranger, recently(), 397, true)];
    assert_eq!(judge(&untrusted, "ota.example.test", &Options::default()), ["tls-untrusted"]);
}

#[test]
fn a_self_signed_leaf_is_never_trustable() {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["ota.example.test".to_owned()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = recently();
    params.not_after = recently() + Duration::days(397);
    let certificate = params.self_signed(&key).expect("certificate");
    let codes = judge(&[certificate.der().clone()], "ota.example.test", &Options::default());
    assert_eq!(codes, ["tls-self-signed-leaf"]);
}
