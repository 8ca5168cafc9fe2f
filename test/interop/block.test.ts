import { interopSuite } from '../helpers/interop.js';

interopSuite('block');
