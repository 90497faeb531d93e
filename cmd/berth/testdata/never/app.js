// Never calls listen(): berth must give up after the spawn timeout and say so.
console.log('booting the never-listening app');
console.error('still waiting for a database that never comes');
setInterval(() => {}, 1000);
