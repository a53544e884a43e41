// A jest reporter beside the default one: lists the tests that skipped because
// something outside npm is missing (their titles, or their describe blocks',
// start with "SKIPPED:" and say what is missing), which the default output
// counts but does not name.
// Plain JavaScript: jest loads reporters without transforming them.

class SkipReporter {
  onRunComplete(_contexts, results) {
    // The reason is a test's title, or its describe block's.
    const reasons = results.testResults.flatMap((file) =>
      file.testResults.filter((t) => t.status === 'pending').map((t) => [...t.ancestorTitles, t.title].find((s) => s.startsWith('SKIPPED:'))),
    );
    const skipped = [...new Set(reasons.filter(Boolean))];
    if (skipped.length > 0) process.stderr.write(`\nSkipped, for something outside npm that is missing:\n${skipped.map((t) => `  ${t}`).join('\n')}\n`);
  }
}

module.exports = SkipReporter;
