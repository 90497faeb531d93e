// Throws at start: a crash loop berth must report without spinning the CPU.
console.log('about to fail');
throw new Error('boom at start: missing DATABASE_URL');
