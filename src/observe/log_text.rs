//! The `text` log format: `2026-12-01T13:11:43.578441Z  INFO target: message key=value ...`.
//!
//! tracing-subscriber's own text format styles every part through `nu_ansi_term` even with
//! colours off, and escapes every string field one character at a time; measured under load
//! that was most of a translated call's log cost (about 16,000 instructions a line). This
//! format writes the same layout directly: colours only when stderr is a terminal, and strings
//! copied whole unless they hold a character that needs escaping. The `json` format stays
//! tracing-subscriber's own.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event layout; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainText {
    pub ansi: bool,
}

/// The field layout: `message` first and bare, then `key=value`; string values quoted and
/// escaped so that no value can end the line or forge another field.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(
            writer,
            "{} ",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        )?;
        let level = level_label(*meta.level());
        if self.ansi {
            write!(
                writer,
                "\x1b[{}m{level}\x1b[0m ",
                level_colour(*meta.level())
            )?;
        } else {
            writer.write_str(level)?;
            writer.write_char(' ')?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FieldWriter<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl FieldWriter<'_> {
    fn separate(&mut self, field: &Field) -> fmt::Result {
        if !self.first {
            self.writer.write_char(' ')?;
        }
        self.first = false;
        if field.name() != "message" {
            self.writer.write_str(field.name())?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }

    fn write(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.separate(field).and_then(|()| value(&mut self.writer));
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let bare = field.name() == "message";
        self.write(field, |writer| {
            if bare {
                write_message(writer, value)
            } else {
                writer.write_char('"')?;
                write_escaped(writer, value)?;
                writer.write_char('"')
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, |writer| write!(writer, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.write(field, |writer| write!(writer, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.write(field, |writer| write!(writer, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `Display` values arrive here too (their `Debug` is their `Display`). The message and
        // the values the shim made are written as they are; they still pass the escape, so
        // nothing can break the line.
        let bare = field.name() == "message";
        self.write(field, |writer| {
            write!(Escaping { writer, bare }, "{value:?}")
        });
    }
}

/// Writes through [`write_message`] (`bare`, the message) or [`write_escaped`].
struct Escaping<'a, 'writer> {
    writer: &'a mut Writer<'writer>,
    bare: bool,
}

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.bare {
            write_message(self.writer, text)
        } else {
            write_escaped(self.writer, text)
        }
    }
}

/// The message, which is not quoted: its quotes are written as they are (`carry "team_id":
/// null`), and only control characters are escaped, so it still cannot end the line. Messages
/// are the shim's own text: anything a client chose goes in a field, quoted and escaped
/// (`ShimError::into_logged_response` logs its description as `error="..."`), since bare text
/// could look like `key=value` fields.
fn write_message(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    if !text.chars().any(char::is_control) {
        return writer.write_str(text);
    }
    for c in text.chars() {
        if c.is_control() {
            write!(writer, "{}", c.escape_default())?;
        } else {
            writer.write_char(c)?;
        }
    }
    Ok(())
}

/// `text`, with `"`, `\` and control characters escaped; copied whole when it has none.
fn write_escaped(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    // The common case, checked a byte at a time: printable ASCII other than `"` and `\`.
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return writer.write_str(text);
    }
    let needs_escape = |c: char| c == '"' || c == '\\' || c.is_control();
    for c in text.chars() {
        if needs_escape(c) {
            write!(writer, "{}", c.escape_default())?;
        } else {
            writer.write_char(c)?;
        }
    }
    Ok(())
}

fn level_label(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// The ANSI colour of each level, as tracing-subscriber's own format uses.
fn level_colour(level: Level) -> &'static str {
    match level {
        Level::TRACE => "35",
        Level::DEBUG => "34",
        Level::INFO => "32",
        Level::WARN => "33",
        Level::ERROR => "31",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::captured_log::CapturedLog;

    fn logged(ansi: bool, emit: impl FnOnce()) -> String {
        let captured = CapturedLog::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .event_format(PlainText { ansi })
            .fmt_fields(PlainFields)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        captured.text()
    }

    #[test]
    fn a_line_has_time_level_target_message_and_fields() {
        let line = logged(false, || {
            tracing::info!(
                target: "deprecated",
                id = tracing::field::display("abc"),
                group = "g1",
                status = 200u16,
                latency_ms = 1.5,
                "a call"
            );
        });
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{line}");
        assert_eq!(
            rest,
            " INFO deprecated: a call id=abc group=\"g1\" status=200 latency_ms=1.5\n"
        );
    }

    #[test]
    fn client_strings_cannot_break_the_line_or_forge_a_field() {
        let line = logged(false, || {
            tracing::warn!(group = "a\" status=500\nforged", "x");
        });
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.trim_end()
                .ends_with(r#"tests: x group="a\" status=500\nforged""#),
            "{line}"
        );
    }

    #[test]
    fn quotes_in_the_message_are_written_as_they_are_and_newlines_escaped() {
        let line = logged(false, || {
            tracing::warn!("legacy replies carry \"team_id\": null\nsecond");
        });
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.trim_end()
                .ends_with(r#"tests: legacy replies carry "team_id": null\nsecond"#),
            "{line}"
        );
        let formatted = logged(false, || tracing::warn!("{} \"x\"", 1));
        assert!(
            formatted.trim_end().ends_with(r#"tests: 1 "x""#),
            "{formatted}"
        );
    }

    #[test]
    fn unicode_is_kept_and_unicode_controls_escaped() {
        let line = logged(false, || tracing::info!(name = "Zoë\u{85}", "x"));
        assert!(line.contains(r#"name="Zoë\u{85}""#), "{line}");
    }

    #[test]
    fn spans_are_named_with_their_fields_and_colour_is_only_on_request() {
        let line = logged(false, || {
            let span = tracing::debug_span!("request", request_id = "r-1");
            let _entered = span.enter();
            tracing::info!("inside");
        });
        assert!(
            line.contains(r#" INFO request{request_id="r-1"}: "#),
            "{line}"
        );
        assert!(!line.contains('\u{1b}'));
        let coloured = logged(true, || tracing::error!("red"));
        assert!(coloured.contains("\u{1b}[31mERROR\u{1b}[0m"), "{coloured}");
    }
}
