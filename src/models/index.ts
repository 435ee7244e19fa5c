export { LeNet5, LeNet5Half } from './lenet';
