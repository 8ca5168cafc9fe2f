import { interopSuite } from '../helpers/interop.js';

interopSuite('i440fx-10.0');
