/* Placeholder while the layers are rebuilt. */
int main(void) { return 0; }
