//! `explo-shim man`: the man page in roff, generated from the command line's own definition,
//! so it never falls behind a flag.

use clap::CommandFactory;

use super::completions::BINARY;
use crate::cli::Cli;

/// The page: the top-level flags with their `EXPLO_SHIM_*` variables, and the subcommands
/// (each documents its own flags in `explo-shim help <subcommand>`). It opens with its `.TH`
/// line, as man pages do; the roff preamble that defines the apostrophe string follows it
/// (`.TH`'s arguments hold no apostrophe: a name and a version).
pub fn page() -> std::io::Result<Vec<u8>> {
    let mut rendered = Vec::new();
    clap_mangen::Man::new(Cli::command().name(BINARY)).render(&mut rendered)?;
    let title_at = rendered
        .split_inclusive(|byte| *byte == b'\n')
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len();
            Some((at, line))
        })
        .find(|(_, line)| line.starts_with(b".TH "));
    let Some((at, title)) = title_at else {
        return Ok(rendered);
    };
    let mut page = Vec::with_capacity(rendered.len());
    page.extend_from_slice(title);
    page.extend_from_slice(&rendered[..at]);
    page.extend_from_slice(&rendered[at + title.len()..]);
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_opens_with_its_title_line_and_keeps_every_other_line() {
        let page = String::from_utf8(page().unwrap()).unwrap();
        assert!(page.starts_with(".TH explo-shim 1 "), "{page}");
        assert_eq!(page.matches(".TH ").count(), 1, "{page}");
        assert!(
            page.contains(".ds Aq"),
            "the apostrophe preamble stays: {page}"
        );
        for flag in ["upstream", "admin", "EXPLO_SHIM_UPSTREAM"] {
            assert!(page.contains(flag), "{flag} missing: {page}");
        }
    }
}
