//! The few facts about an X.509 certificate that explain an install failure: whose it is
//! (subject common name), its validity, and its SHA-1 fingerprint (how Apple's tools name it).

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::der::{self, DerError, Element};

/// A developer or distribution certificate named by a provisioning profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// The subject's common name, e.g. "Apple Distribution: Example Corp (ABCDE12345)".
    pub subject: Option<String>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// SHA-1 of the DER encoding, in upper-case hex.
    pub sha1: String,
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;

/// Summarises a DER certificate.
pub fn summarize(der_bytes: &[u8]) -> Result<CertificateSummary, DerError> {
    let (certificate, _) = der::parse(der_bytes)?;
    let tbs = first(&certificate)?;
    let mut fields = tbs.children().peekable();
    if let Some(Ok(element)) = fields.peek()
        && element.tag == der::TAG_CONTEXT_0
    {
        fields.next();
    }
    let mut take = || fields.next().unwrap_or(Err(DerError("a certificate field is missing")));
    let _serial = take()?;
    let _signature = take()?;
    let _issuer = take()?;
    let validity = take()?;
    let subject = take()?;
    let mut times = validity.children();
    let not_before = parse_time(&times.next().unwrap_or(Err(DerError("no notBefore")))?)?;
    let expires_at = parse_time(&times.next().unwrap_or(Err(DerError("no notAfter")))?)?;
    let sha1 = Sha1::digest(der_bytes).iter().map(|byte| format!("{byte:02X}")).collect();
    Ok(CertificateSummary { subject: common_name(&subject)?, not_before, expires_at, sha1 })
}

fn first<'a>(element: &Element<'a>) -> Result<Element<'a>, DerError> {
    element.children().next().unwrap_or(Err(DerError("empty certificate")))
}

fn common_name(name: &Element<'_>) -> Result<Option<String>, DerError> {
    for relative in name.children() {
        for attribute in relative?.children() {
            let attribute = attribute?;
            let mut parts = attribute.children();
            let kind = parts.next().unwrap_or(Err(DerError("empty attribute")))?;
            if kind.content == OID_COMMON_NAME {
                let value = parts.next().unwrap_or(Err(DerError("empty attribute")))?;
                return Ok(Some(String::from_utf8_lossy(value.content).into_owned()));
            }
        }
    }
    Ok(None)
}

fn parse_time(element: &Element<'_>) -> Result<OffsetDateTime, DerError> {
    let text = std::str::from_utf8(element.content).map_err(|_| DerError("bad time"))?;
    let digits = text.strip_suffix('Z').ok_or(DerError("time is not in UTC"))?;
    let (year, rest) = match element.tag {
        TAG_UTC_TIME => {
            let short: i32 = number(digits.get(0..2))?;
            // RFC 5280: two-digit years 50-99 are 19xx, 00-49 are 20xx.
            (if short >= 50 { 1900 + short } else { 2000 + short }, digits.get(2..))
        }
        TAG_GENERALIZED_TIME => (number(digits.get(0..4))?, digits.get(4..)),
        _ => return Err(DerError("unknown time type")),
    };
    let rest = rest.ok_or(DerError("bad time"))?;
    let field = |at: usize| -> Result<u8, DerError> { number(rest.get(at..at + 2)) };
    let month = Month::try_from(field(0)?).map_err(|_| DerError("bad month"))?;
    let date = Date::from_calendar_date(year, month, field(2)?).map_err(|_| DerError("bad date"))?;
    let seconds = if rest.len() >= 10 { field(8)? } else { 0 };
    let time = Time::from_hms(field(4)?, field(6)?, seconds).map_err(|_| DerError("bad time"))?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

fn number<T: std::str::FromStr>(text: Option<&str>) -> Result<T, DerError> {
    text.filter(|text| text.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .ok_or(DerError("bad number in time"))
}
