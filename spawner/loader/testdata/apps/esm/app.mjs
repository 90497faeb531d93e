// An ES module that awaits its configuration at the top level before it
// creates and listens its Express server.
import { setTimeout as delay } from 'node:timers/promises';

const { default: express } = await import('express');
const config = await delay(20, { greeting: 'top-level await done' });

const app = express();
app.get('/', (req, res) => res.json({ app: 'esm', pid: process.pid, greeting: config.greeting }));
app.listen(3000);
