//! `POST /login` and `POST /logout`: the console's sign-in form trades the admin token for a
//! session cookie, and signing out drops it.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;

use super::AdminState;
use super::auth;
use super::refusals::Refusal;
use super::replies::{several_credentials, throttled, unauthorized};
use crate::config::policy::AdminToken;
use crate::message::body::{BoxError, ProxyBody, full_body};

/// The most of a sign-in form read: a token and its field name.
const SIGN_IN_FORM_BYTES: usize = 4096;
/// How long a sign-in form's body may take to arrive: hyper's head timeout ends with the head.
/// No slot is held while it is read, so forms that never arrive cost only their own
/// connections (capped with the listener's), never another sign-in its turn.
const SIGN_IN_FORM_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /login` from the console's sign-in form (`token=...`): the right token is traded for
/// a session cookie and the browser sent to the console; a wrong one gets the form again.
pub(super) async fn sign_in<B>(
    request: Request<B>,
    token: &AdminToken,
    state: &AdminState,
    client: IpAddr,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // A refused address's form is not even read.
    if let Err(wait) = state.failures.throttle.check(client, Instant::now()) {
        return throttled(true, wait);
    }
    let reading = Limited::new(request.into_body(), SIGN_IN_FORM_BYTES).collect();
    let form = match tokio::time::timeout(SIGN_IN_FORM_TIMEOUT, reading).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) | Err(_) => return unauthorized(true, Some("The form could not be read.")),
    };
    // Again, now that the form is here: while it was read, other sign-ins from the address
    // may have failed enough to block it, and each of them had passed the check above too.
    // From here to counting this one's failure nothing awaits, and the admin listener runs on
    // one thread, so no other sign-in is compared in between: an address gets no more
    // guesses than the limit, however many sign-ins it sends at once.
    if let Err(wait) = state.failures.throttle.check(client, Instant::now()) {
        return throttled(true, wait);
    }
    let mut given = form_urlencoded::parse(&form)
        .filter(|(name, _)| name == "token")
        .map(|(_, value)| value.trim().to_owned());
    let (first, second) = (given.next(), given.next());
    if second.is_some() {
        state
            .failures
            .refused(client, Refusal::Several, &state.metrics);
        return several_credentials();
    }
    if !token.matches(first.unwrap_or_default().as_bytes()) {
        state
            .failures
            .refused(client, Refusal::WrongToken, &state.metrics);
        return unauthorized(true, Some("That is not the admin token."));
    }
    let cookie = auth::session_cookie(token, SystemTime::now());
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /logout`: the browser drops its session cookie and goes back to the console (the
/// sign-in form). The value itself stays good until its expiry, as any copy of it would: a
/// session is checked, not stored, so that every replica can check it.
pub(super) fn signed_out() -> Response<ProxyBody> {
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(header::SET_COOKIE, auth::signed_out_cookie());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
